"""Data boundaries: a team's jobs read and write only its own Cloud Storage folders and BigQuery datasets.

Every job runs upstream as the platform's one identity, so only the proxy can keep teams' data apart. These tests
replay the probe that found the hole (team B reading team A's private input) and every spelling of a URI or a
field name that could carry a foreign location past the check, on both API versions. Each refusal is a 403 in
Google's envelope naming the URI, and the emulator never hears of the job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from proxy.cli import cli
from tests.support.proxy_server import ProxyServer
from tests.tenancy.conftest import Tenancy, envelope, unique

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TEMPLATES = ("gs://batch-data/{team}/", "gs://shared-data/")
TEAM_A, TEAM_B = "bound-a", "bound-b"
VERSIONS = ("v1", "v1beta1")


@pytest.fixture(scope="module")
def bounded(tenancy: Tenancy) -> Iterator[ProxyServer]:
    """A replica configured with the templates, trusting team policies for 0 s so `vbp teams set` shows at once."""
    proxy = tenancy.replica(team_gcs_prefixes=TEMPLATES, team_cache_seconds=0)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def keys(tenancy: Tenancy) -> dict[str, str]:
    return {team: tenancy.new_key(team)[1] for team in (TEAM_A, TEAM_B)}


def body(inputs: list[str] | None = None, output: str | None = None, **extra: Any) -> dict[str, Any]:
    """A create body of team B's own locations unless told otherwise."""
    return {"displayName": unique("bound"), "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl",
                            "gcsSource": {"uris": inputs or [f"gs://batch-data/{TEAM_B}/input.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": output or f"gs://batch-data/{TEAM_B}/out/"}},
            **extra}


def create(tenancy: Tenancy, proxy: ProxyServer, secret: str, payload: object,
           version: str = "v1") -> tuple[httpx.Response, int]:
    return tenancy.create_counted(secret, payload, proxy=proxy, version=version)


def assert_denied(reply: httpx.Response, calls: int, uri: str) -> None:
    assert reply.status_code == 403, reply.text
    error = envelope(reply)
    assert error["status"] == "PERMISSION_DENIED"
    assert repr(uri) in error["message"], error["message"]
    assert calls == 0


def teams_cli(tenancy: Tenancy, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["teams", *args], env={"VBP_DATABASE_URL": tenancy.database_url,
                                                            "VBP_TEAM_GCS_PREFIXES": ",".join(TEMPLATES)})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


@pytest.mark.parametrize("version", VERSIONS)
def test_team_b_cannot_read_team_a_private_input(tenancy: Tenancy, bounded: ProxyServer, keys: dict[str, str],
                                                 version: str) -> None:
    """The probe that found the hole: team A's private object as input, team B's own folder as output."""
    secret = "gs://team-a-private/secret.jsonl"
    reply, calls = create(tenancy, bounded, keys[TEAM_B], body([secret]), version=version)
    assert_denied(reply, calls, secret)


@pytest.mark.parametrize("version", VERSIONS)
def test_team_b_cannot_write_into_team_a_folder(tenancy: Tenancy, bounded: ProxyServer, keys: dict[str, str],
                                                version: str) -> None:
    target = f"gs://batch-data/{TEAM_A}/out/"
    reply, calls = create(tenancy, bounded, keys[TEAM_B], body(output=target), version=version)
    assert_denied(reply, calls, target)


HOSTILE_INPUTS = [
    f"gs://batch-data/{TEAM_A}/input.jsonl",                        # the other team's folder
    f"gs://batch-data/{TEAM_B}/../{TEAM_A}/input.jsonl",            # dot segments
    f"gs://batch-data/{TEAM_B}/./../{TEAM_A}/input.jsonl",
    f"gs://batch-data/{TEAM_B}//../{TEAM_A}/input.jsonl",           # an empty segment
    f"gs://batch-data/{TEAM_B}/%2E%2E/{TEAM_A}/input.jsonl",        # percent-encoded dots
    f"gs://batch-data/{TEAM_B}%2F..%2F{TEAM_A}/input.jsonl",        # percent-encoded slashes
    f"gs://batch-data/{TEAM_B}%2f{TEAM_A}/input.jsonl",
    f"gs://batch-data/{TEAM_B}\\..\\{TEAM_A}/input.jsonl",          # backslashes
    f"gs://BATCH-DATA/{TEAM_A}/input.jsonl",                        # the bucket's case
    f"gs://batch-data/{TEAM_B.upper()}/input.jsonl",                # object names are case-sensitive
    f"gs://batch-data/{TEAM_B}x/input.jsonl",                       # a folder that merely begins alike
    f"gs://batch-data/{TEAM_B}",                                    # not inside the folder
    "gs://batch-data/bound-*/input.jsonl",                          # a wildcard above the prefix
    f"gs://batch-data/{TEAM_B}*/input.jsonl",
    f"gs://batch-data/{TEAM_B}?/input.jsonl",
    "gs://batch-data/bound-[ab]/input.jsonl",
    "gs://batch-data/**",
    f"gs://batch-*/{TEAM_B}/input.jsonl",                          # a wildcard in the bucket
    f"gs://*/{TEAM_B}/input.jsonl",
    f"gs://batch-data/{TEAM_B}/input.jsonl\n",                     # control characters
    f"gs://batch-data/{TEAM_B}/\x00/input.jsonl",
    f"gs:/batch-data/{TEAM_B}/input.jsonl",                        # not a gs:// URI
    f"https://storage.googleapis.com/batch-data/{TEAM_B}/input.jsonl",
    "gs://shared-data.evil/x.jsonl",                               # another bucket that begins alike
    "gs://team-a-private/secret.jsonl",
]


@pytest.mark.parametrize("uri", HOSTILE_INPUTS)
def test_no_spelling_of_an_input_escapes_the_prefix(tenancy: Tenancy, bounded: ProxyServer, keys: dict[str, str],
                                                    uri: str) -> None:
    reply, calls = create(tenancy, bounded, keys[TEAM_B], body([f"gs://batch-data/{TEAM_B}/ok.jsonl", uri]))
    assert_denied(reply, calls, uri)


# An output prefix names a folder (Vertex writes under `<prefix>/prediction-...`): `gs://batch-data/bound-b` is
# team B's own folder as an output, though not an input object inside it.
@pytest.mark.parametrize("uri", [u for u in HOSTILE_INPUTS
                                 if not any(c in u for c in "*?[") and u != f"gs://batch-data/{TEAM_B}"])
def test_no_spelling_of_an_output_escapes_the_prefix(tenancy: Tenancy, bounded: ProxyServer,
                                                     keys: dict[str, str], uri: str) -> None:
    reply, calls = create(tenancy, bounded, keys[TEAM_B], body(output=uri))
    assert_denied(reply, calls, uri)


def test_an_output_prefix_may_not_hold_a_wildcard(tenancy: Tenancy, bounded: ProxyServer,
                                                  keys: dict[str, str]) -> None:
    uri = f"gs://batch-data/{TEAM_B}/out-*/"
    reply, calls = create(tenancy, bounded, keys[TEAM_B], body(output=uri))
    assert_denied(reply, calls, uri)
    assert "wildcards are not allowed" in reply.json()["error"]["message"]


@pytest.mark.parametrize("version", VERSIONS)
def test_snake_case_fields_are_checked_alike(tenancy: Tenancy, bounded: ProxyServer, keys: dict[str, str],
                                             version: str) -> None:
    secret = f"gs://batch-data/{TEAM_A}/input.jsonl"
    payload = {"display_name": unique("snake"), "model": "publishers/google/models/gemini-2.5-flash",
               "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [secret]}},
               "output_config": {"predictions_format": "jsonl",
                                 "gcs_destination": {"output_uri_prefix": f"gs://batch-data/{TEAM_B}/out/"}}}
    reply, calls = create(tenancy, bounded, keys[TEAM_B], payload, version=version)
    assert_denied(reply, calls, secret)
    payload["output_config"]["gcs_destination"]["output_uri_prefix"] = f"gs://batch-data/{TEAM_A}/o/"
    payload["input_config"]["gcs_source"]["uris"] = [f"gs://batch-data/{TEAM_B}/input.jsonl"]
    reply, calls = create(tenancy, bounded, keys[TEAM_B], payload, version=version)
    assert_denied(reply, calls, f"gs://batch-data/{TEAM_A}/o/")


def test_own_locations_are_forwarded_normalised(tenancy: Tenancy, bounded: ProxyServer,
                                                keys: dict[str, str]) -> None:
    """Wildcards past the prefix, the shared template, an upper-case bucket and snake_case all pass, and Vertex is
    given the one spelling that was checked."""
    payload = {"display_name": unique("own"), "model": "publishers/google/models/gemini-2.5-flash",
               "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [
                   f"gs://Batch-Data/{TEAM_B}/input.jsonl", f"gs://batch-data/{TEAM_B}/2026-*/part-?.jsonl",
                   f"gs://batch-data/{TEAM_B}/**", "gs://shared-data/common/input.jsonl"]}},
               "output_config": {"predictions_format": "jsonl",
                                 "gcs_destination": {"output_uri_prefix": f"gs://batch-data/{TEAM_B}"}}}
    reply, calls = create(tenancy, bounded, keys[TEAM_B], payload, version="v1beta1")
    assert reply.status_code == 200, reply.text
    assert calls == 1
    spec = tenancy.emulator_job(reply.json()["name"]).spec
    assert spec["inputConfig"]["gcsSource"]["uris"] == [
        f"gs://batch-data/{TEAM_B}/input.jsonl", f"gs://batch-data/{TEAM_B}/2026-*/part-?.jsonl",
        f"gs://batch-data/{TEAM_B}/**", "gs://shared-data/common/input.jsonl"]
    assert spec["outputConfig"]["gcsDestination"]["outputUriPrefix"] == f"gs://batch-data/{TEAM_B}"
    assert "input_config" not in spec and "display_name" not in spec


def test_no_prefix_configured_allows_no_location(tenancy: Tenancy) -> None:
    """Safe by default: a proxy with no templates and a team with no policy refuses every gs:// location."""
    proxy = tenancy.replica(team_gcs_prefixes=(), team_cache_seconds=0)
    try:
        _, secret = tenancy.new_key(unique("nothing"))
        reply, calls = create(tenancy, proxy, secret, body([f"gs://batch-data/{TEAM_B}/input.jsonl"]))
    finally:
        proxy.stop()
    assert_denied(reply, calls, f"gs://batch-data/{TEAM_B}/input.jsonl")
    assert "no Cloud Storage location is configured for this team" in reply.json()["error"]["message"]


def test_teams_set_adds_a_prefix_of_the_team_own(tenancy: Tenancy, bounded: ProxyServer) -> None:
    team = unique("own-prefix")
    _, secret = tenancy.new_key(team)
    payload = body([f"gs://team-own/{team}/in.jsonl"], output=f"gs://team-own/{team}/out/")
    reply, calls = create(tenancy, bounded, secret, payload)
    assert_denied(reply, calls, f"gs://team-own/{team}/in.jsonl")

    view = teams_cli(tenancy, "set", team, "--gcs-prefix", f"gs://team-own/{team}", "--json")
    assert view["gcs_prefixes"] == [f"gs://team-own/{team}/"]
    assert view["effective_gcs_prefixes"] == [f"gs://batch-data/{team}/", "gs://shared-data/",
                                              f"gs://team-own/{team}/"]
    reply, calls = create(tenancy, bounded, secret, payload)
    assert reply.status_code == 200 and calls == 1, reply.text
    # Another team gains nothing from it.
    reply, calls = create(tenancy, bounded, tenancy.new_key(unique("other"))[1], payload)
    assert_denied(reply, calls, f"gs://team-own/{team}/in.jsonl")

    shown = teams_cli(tenancy, "show", team, "--json")
    assert shown == view
    assert any(row["team"] == team for row in teams_cli(tenancy, "list", "--json"))
    text = teams_cli(tenancy, "show", team)
    assert f"gs://team-own/{team}/" in text
    teams_cli(tenancy, "set", team, "--clear-gcs-prefixes")
    reply, calls = create(tenancy, bounded, secret, payload)
    assert_denied(reply, calls, f"gs://team-own/{team}/in.jsonl")


def test_a_policy_change_reaches_a_replica_within_its_cache_time(tenancy: Tenancy) -> None:
    """A replica trusts a team's policy for VBP_TEAM_CACHE_SECONDS, then reads the change."""
    import time

    team = unique("cached")
    _, secret = tenancy.new_key(team)
    proxy = tenancy.replica(team_gcs_prefixes=(), team_cache_seconds=1)
    try:
        payload = body([f"gs://late/{team}/in.jsonl"], output=f"gs://late/{team}/out/")
        assert create(tenancy, proxy, secret, payload)[0].status_code == 403  # now cached: no prefix
        teams_cli(tenancy, "set", team, "--gcs-prefix", f"gs://late/{team}/")
        assert create(tenancy, proxy, secret, payload)[0].status_code == 403  # still the cached policy
        time.sleep(1.1)
        reply, _ = create(tenancy, proxy, secret, payload)
        assert reply.status_code == 200, reply.text
    finally:
        proxy.stop()


def test_bigquery_needs_a_dataset_of_the_team(tenancy: Tenancy, bounded: ProxyServer) -> None:
    team = unique("bq")
    _, secret = tenancy.new_key(team)

    def bq(source: str, destination: str) -> dict[str, Any]:
        return {"displayName": unique("bq"), "model": "publishers/google/models/gemini-2.5-flash",
                "inputConfig": {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": source}},
                "outputConfig": {"predictionsFormat": "bigquery", "bigqueryDestination": {"outputUri": destination}}}

    own_source, own_destination = "bq://team-project.team_data.requests", "bq://team-project.team_data"
    reply, calls = create(tenancy, bounded, secret, bq(own_source, own_destination))
    assert_denied(reply, calls, own_source)
    assert "none are configured for this team" in reply.json()["error"]["message"]

    teams_cli(tenancy, "set", team, "--bq-dataset", "Team-Project.team_data")
    reply, calls = create(tenancy, bounded, secret, bq(own_source, own_destination))
    assert reply.status_code == 200 and calls == 1, reply.text

    for source, destination, named in [
        ("bq://other-project.team_data.requests", own_destination, "bq://other-project.team_data.requests"),
        ("bq://team-project.other_data.requests", own_destination, "bq://team-project.other_data.requests"),
        ("bq://team-project.team_data.t.x", own_destination, "bq://team-project.team_data.t.x"),
        (own_source, "bq://team-project", "bq://team-project"),           # Vertex would make a new dataset
        (own_source, "bq://team-project.other_data", "bq://team-project.other_data"),
        (own_source, "bq://team-project.team-data", "bq://team-project.team-data"),  # not a dataset name
    ]:
        reply, calls = create(tenancy, bounded, secret, bq(source, destination))
        assert_denied(reply, calls, named)


def test_teams_api_is_for_admins(tenancy: Tenancy, bounded: ProxyServer) -> None:
    team = unique("api")
    admin = tenancy.client_for(tenancy.keys["admin"], proxy=bounded)
    member = tenancy.client_for(tenancy.keys["team-a"], proxy=bounded)
    assert member.get("/v1/teams").status_code == 403
    assert member.patch(f"/v1/teams/{team}", json={"gcs_prefixes": ["gs://x-bucket/"]}).status_code == 403
    assert httpx.get(bounded.url + "/v1/teams").status_code == 401

    shown = admin.get(f"/v1/teams/{team}")
    assert shown.status_code == 200
    assert shown.json() == {"team": team, "gcs_prefixes": [], "bq_datasets": [], "allowed_fields": [],
                            "effective_gcs_prefixes": [f"gs://batch-data/{team}/", "gs://shared-data/"],
                            "updated_at": None, "updated_by": None}
    patched = admin.patch(f"/v1/teams/{team}", json={"gcs_prefixes": ["gs://api-bucket/data"],
                                                     "allowed_fields": ["service_account"]})
    assert patched.status_code == 200, patched.text
    view = patched.json()
    assert (view["gcs_prefixes"], view["allowed_fields"]) == (["gs://api-bucket/data/"], ["serviceAccount"])
    assert view["updated_by"] == tenancy.key_ids["admin"]
    patched = admin.patch(f"/v1/teams/{team}", json={"bq_datasets": ["proj-one.ds"]}).json()
    assert (patched["gcs_prefixes"], patched["bq_datasets"]) == (["gs://api-bucket/data/"], ["proj-one.ds"])
    replaced = admin.put(f"/v1/teams/{team}", json={"bq_datasets": ["proj-one.ds"]}).json()
    assert (replaced["gcs_prefixes"], replaced["allowed_fields"]) == ([], [])
    assert team in [row["team"] for row in admin.get("/v1/teams").json()["teams"]]

    for payload, words in [({"gcs_prefixes": ["gs://a-bucket/*/"]}, "wildcards are not allowed"),
                           ({"gcs_prefixes": ["gs://a-bucket/../x/"]}, ". or .. path segment"),
                           ({"gcs_prefixes": ["s3://a-bucket/"]}, "not a gs:// URI"),
                           ({"gcs_prefixes": "gs://a-bucket/"}, "gcs_prefixes must be a list of strings"),
                           ({"bq_datasets": ["just-a-project"]}, "is not PROJECT.DATASET"),
                           ({"allowed_fields": ["labels_"]}, "is not a field a team can be allowed"),
                           ({"owner": "x"}, "Unknown field(s): owner"),
                           ({"gcs_prefixes": [f"gs://b{i:03d}-bucket/" for i in range(101)]}, "at most 100 entries"),
                           ({"bq_datasets": ["p" * 2000]}, "at most 1100 characters")]:
        reply = admin.patch(f"/v1/teams/{team}", json=payload)
        assert reply.status_code == 400, (payload, reply.text)
        assert words in envelope(reply)["message"], (payload, reply.text)
    assert admin.get("/v1/teams/Not_A_Team").status_code == 400
