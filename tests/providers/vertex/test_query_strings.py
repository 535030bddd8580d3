"""Query strings on the native door: each operation forwards only the parameters Vertex defines for it, re-encoded,
and refuses everything else (Google's system parameters, look-alikes, repeats) with a 400 naming it."""

from __future__ import annotations

import pytest

from proxy.errors import InvalidArgument
from proxy.providers.vertex.query import parse_query
from tests.providers.vertex.conftest import LOCATION, Proxied
from tests.support.raw_http import raw_request

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

JOBS = f"/v1/projects/your-project/locations/{LOCATION}/batchPredictionJobs"
MISSING = f"{JOBS}/1234567890123456789"
TARGETS = {"list": ("GET", JOBS), "create": ("POST", JOBS), "get": ("GET", MISSING),
           "cancel": ("POST", MISSING + ":cancel"), "delete": ("DELETE", MISSING)}
CREATE_BODY = b'{"displayName": "q", "model": "publishers/google/models/gemini-2.5-flash"}'


def call(proxied: Proxied, operation: str, query: str, who: str = "team-a"):  # type: ignore[no-untyped-def]
    method, path = TARGETS[operation]
    return raw_request(proxied.proxy.port, method, f"{path}?{query}", body=CREATE_BODY if operation == "create"
                       else b"", headers={"Authorization": f"Bearer {proxied.keys[who]}",
                                          "Content-Type": "application/json"})


# (query, the name the message quotes)
REFUSED = [
    ("key=AIzaSomething", '"key"'),
    ("access_token=ya29.stolen", '"access_token"'),
    ("quotaUser=someone-else", '"quotaUser"'),
    ("userProject=another-project", '"userProject"'),
    ("fields=name", '"fields"'),
    ("callback=steal", '"callback"'),
    ("alt=media", '"alt"'),
    ("prettyPrint=false", '"prettyPrint"'),
    ("Filter=x", '"Filter"'),
    ("%24filter=x", '"$filter"'),
    ("$filter=x", '"$filter"'),
    ("filter%00=x", '"filter\\u0000"'),
    ("filter+=x", '"filter "'),
    ("filter%20=x", '"filter "'),
    ("%20filter=x", '" filter"'),
    ("filter.x=1", '"filter.x"'),
    ("pagesize=5", '"pagesize"'),
]


@pytest.mark.parametrize("operation", sorted(TARGETS))
@pytest.mark.parametrize(("query", "named"), REFUSED, ids=[q for q, _ in REFUSED])
def test_parameters_vertex_does_not_define_are_refused_by_name(proxied: Proxied, operation: str, query: str,
                                                               named: str) -> None:
    before = len(proxied.emulator_calls())
    reply = call(proxied, operation, f"{query}&$alt=json")
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith(f"Query parameter(s) not accepted by {operation}: {named}."), error
    assert len(proxied.emulator_calls()) == before


@pytest.mark.parametrize(("operation", "query"), [
    ("get", "pageSize=5"), ("get", "filter=x"), ("get", "readMask=name"), ("cancel", "pageToken=t"),
    ("delete", "filter=x"), ("create", "pageSize=1"),
])
def test_list_parameters_belong_to_list_alone(proxied: Proxied, operation: str, query: str) -> None:
    before = len(proxied.emulator_calls())
    reply = call(proxied, operation, query)
    assert reply.status == 400 and "not accepted by " + operation in reply.json()["error"]["message"]
    assert len(proxied.emulator_calls()) == before


@pytest.mark.parametrize(("query", "words"), [
    ("pageSize=1&pageSize=2", 'The query parameter "pageSize" is given more than once.'),
    ("%24alt=json&$alt=json", 'The query parameter "$alt" is given more than once.'),
    ("filter=a&fil%74er=b", 'The query parameter "filter" is given more than once.'),
    ("$alt=proto", "$alt may only be json or json;enum-encoding=int."),
    ("$alt=media", "$alt may only be json or json;enum-encoding=int."),
    ("pageSize=%zz", "The query string has a malformed percent-escape."),
    ("pageToken=%C3%28", "The query string is not UTF-8 once decoded."),
])
def test_repeats_other_alts_and_malformed_escapes_are_refused(proxied: Proxied, query: str, words: str) -> None:
    before = len(proxied.emulator_calls())
    reply = call(proxied, "list", query, who="admin")
    assert reply.status == 400 and reply.json()["error"]["message"] == words, reply.body
    assert len(proxied.emulator_calls()) == before


def test_many_unknown_names_are_named_briefly(proxied: Proxied) -> None:
    query = "&".join(f"p{i}=1" for i in range(30)) + "&" + "x" * 500 + "=1"
    message = call(proxied, "get", query).json()["error"]["message"]
    assert message.startswith('Query parameter(s) not accepted by get: "p0", "p1", ') and ', "p9", ...' in message
    assert len(message) < 300


def test_what_list_accepts_reaches_vertex_re_encoded(proxied: Proxied) -> None:
    query = ("pageSize=5&pageToken=&readMask=name%2CdisplayName&filter=display_name%3D%22a+b%22"
             "&%24alt=json%3Benum-encoding%3Dint")
    reply = call(proxied, "list", query, who="admin")
    assert reply.status == 200, reply.body
    sent = proxied.emulator_calls()[-1]
    assert (sent["method"], sent["path"]) == ("GET", f"/v1/projects/my-real-project/locations/{LOCATION}"
                                                     "/batchPredictionJobs")
    # The emulator logs the query percent-decoded: every value arrived as the caller meant it.
    assert sent["query"] == ('pageSize=5&pageToken=&readMask=name,displayName&filter=display_name="a b"'
                             "&$alt=json;enum-encoding=int")


def test_a_team_list_keeps_its_parameters_and_gets_the_team_clause(proxied: Proxied) -> None:
    reply = call(proxied, "list", "pageSize=3&filter=state%3D%22JOB_STATE_RUNNING%22&$alt=json", who="team-b")
    assert reply.status == 200, reply.body
    assert proxied.emulator_calls()[-1]["query"] == (
        'pageSize=3&filter=((labels.vbp-team="team-b") AND (state="JOB_STATE_RUNNING"))&$alt=json')


@pytest.mark.parametrize("operation", ["get", "cancel", "delete"])
def test_every_operation_takes_the_alt_the_aiplatform_client_sends(proxied: Proxied, operation: str) -> None:
    reply = call(proxied, operation, "$alt=json;enum-encoding=int", who="admin")
    assert reply.status == 404  # the job does not exist: Vertex says so, so the call went through
    assert proxied.emulator_calls()[-1]["query"] == "$alt=json;enum-encoding=int"


def test_raw_bytes_beyond_ascii_are_refused() -> None:
    # uvicorn's parser already refuses them on the wire; the parser holds the rule whatever server runs it
    with pytest.raises(InvalidArgument, match="must be ASCII"):
        parse_query(b"pageToken=\xe9", operation="list")
