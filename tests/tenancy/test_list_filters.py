"""List isolation: no filter a caller writes — OR, NOT, quotes, parentheses, encodings — lists another team's jobs;
one that cannot be restricted safely is refused with 400 before Vertex; paging still works; jobs made without the
proxy are invisible to team keys.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.errors import InvalidArgument
from proxy.providers.vertex import filters
from proxy.providers.vertex.team_filter import team_filter
from tests.tenancy.conftest import COLLECTION, MISSING_ID, Tenancy, envelope, unique

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

OWN, OTHER = "filt-a", "filt-b"


@pytest.fixture(scope="module")
def teams(tenancy: Tenancy) -> dict[str, Any]:
    """Two teams with jobs of their own, plus jobs made straight at Vertex (one of them labelled, by hand)."""
    found: dict[str, Any] = {"own": set(), "other": set()}
    for team, bucket in ((OWN, "own"), (OTHER, "other")):
        key_id, secret = tenancy.new_key(team)
        tenancy.keys[team], tenancy.key_ids[team] = secret, key_id
        for n in range(3):
            job = tenancy.create(team, f"{team}-job-{n}")
            found[bucket].add(job["name"])
    found["outside"] = tenancy.create_outside("made-outside")["name"]
    return found


def listed(tenancy: Tenancy, who: str, **params: Any) -> tuple[int, list[dict[str, Any]], int]:
    """(status, jobs, emulator calls made) of one list call with raw parameters."""
    before = len(tenancy.emulator_calls())
    reply = tenancy.client(who).get(COLLECTION, params={"pageSize": 1000, **params})
    calls = len(tenancy.emulator_calls()) - before
    if reply.status_code != 200:
        envelope(reply)
        return reply.status_code, [], calls
    return 200, list(reply.json().get("batchPredictionJobs", [])), calls


def assert_only_own(jobs: list[dict[str, Any]]) -> None:
    assert all(job.get("labels", {}).get("vbp-team") == OWN for job in jobs), [j.get("labels") for j in jobs]


HOSTILE = [
    # (filter, expected status, expected count of own jobs listed (None: do not care))
    (f'labels.vbp-team="{OTHER}"', 200, 0),
    ("labels.vbp-team:*", 200, 3),
    (f'state!="JOB_STATE_SUCCEEDED" OR labels.vbp-team="{OTHER}"', 200, 3),
    (f'labels.vbp-team="{OWN}" OR labels.vbp-team="{OTHER}"', 200, 3),
    ("display_name:* OR NOT display_name:*", 200, 3),
    (f'NOT labels.vbp-team="{OWN}"', 200, 0),
    (f'-labels.vbp-team="{OWN}"', 200, 0),
    ('display_name="x\\" OR labels.vbp-team:* OR display_name=\\"y"', 200, 0),  # one string, escaped quotes
    (f"display_name='{OTHER}-job-0' OR display_name:\"{OWN}-job-*\"", 200, 3),
    (") OR (labels.vbp-team:*", 400, None),
    ('display_name="a") OR (labels.vbp-team:*', 400, None),
    ('display_name="a" OR (labels.vbp-team:*', 400, None),
    ("((((", 400, None),
    ('"', 400, None),
    ("'", 400, None),
    ('display_name="unterminated', 400, None),
    ("display_name='x' OR 'y'", 400, None),
    ('state="JOB_STATE_PENDING" display_name:*', 400, None),  # juxtaposition is refused, not guessed at
    ("OR labels.vbp-team:*", 400, None),
    ("labels.vbp-team:* OR", 400, None),
    ("AND", 400, None),
    ("labels.vbp-team.x:*", 400, None),
    ("labels:*", 400, None),
    ("display_name:*\x00", 400, None),
    ("display_name:* ; labels.vbp-team:*", 400, None),
    ("NOT " * 31 + "display_name:*", 400, None),  # valid, but too deep once parenthesised: refused here
    ("(" * 40 + "display_name:*" + ")" * 40, 400, None),
]


@pytest.mark.parametrize(("text", "status", "own_count"), HOSTILE, ids=[f"f{i}" for i in range(len(HOSTILE))])
def test_hostile_filter_never_lists_another_teams_job(tenancy: Tenancy, teams: dict[str, Any], text: str,
                                                      status: int, own_count: int | None) -> None:
    got, jobs, calls = listed(tenancy, OWN, filter=text)
    assert got == status
    assert calls == (1 if status == 200 else 0)
    assert_only_own(jobs)
    if own_count is not None:
        assert len(jobs) == own_count


def test_no_filter_lists_only_the_teams_jobs_and_admin_lists_all(tenancy: Tenancy, teams: dict[str, Any]) -> None:
    status, jobs, _ = listed(tenancy, OWN)
    assert status == 200 and {j["name"] for j in jobs} == teams["own"]
    status, everything, _ = listed(tenancy, "admin")
    names = {j["name"] for j in everything}
    assert status == 200 and teams["own"] | teams["other"] | {teams["outside"]} <= names


@pytest.mark.parametrize("query", [
    "filter=display_name%3A%2A&filter=labels.vbp-team%3A%2A",  # two filters: which would Vertex take?
    "filter=display_name%3A%2A&fil%74er=labels.vbp-team%3A%2A",  # the same name, encoded
    "filter=%29+OR+%28labels.vbp-team%3A%2A",  # `+` is a space, as Vertex reads it
])
def test_query_string_tricks_are_refused(tenancy: Tenancy, teams: dict[str, Any], query: str) -> None:
    before = len(tenancy.emulator_calls())
    reply = tenancy.client(OWN).get(f"{COLLECTION}?{query}")
    assert reply.status_code == 400 and envelope(reply)["status"] == "INVALID_ARGUMENT"
    assert len(tenancy.emulator_calls()) == before


def test_an_encoded_filter_name_is_still_restricted(tenancy: Tenancy, teams: dict[str, Any]) -> None:
    reply = tenancy.client(OWN).get(f"{COLLECTION}?fil%74er=labels.vbp-team%3A%2A&pageSize=1000")
    assert reply.status_code == 200
    jobs = reply.json()["batchPredictionJobs"]
    assert {j["name"] for j in jobs} == teams["own"]


def test_paging_walks_exactly_the_teams_jobs(tenancy: Tenancy) -> None:
    team = unique("pager")
    key_id, secret = tenancy.new_key(team)
    tenancy.keys[team], tenancy.key_ids[team] = secret, key_id
    mine = {tenancy.create(team)["name"] for _ in range(5)}
    tenancy.create("team-b")  # interleaved with the team's own
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"pageSize": 2, **({"pageToken": token} if token else {})}
        reply = tenancy.client(team).get(COLLECTION, params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        seen += [j["name"] for j in body.get("batchPredictionJobs", [])]
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == mine


def test_jobs_made_without_the_proxy_are_invisible_to_team_keys(tenancy: Tenancy, teams: dict[str, Any]) -> None:
    outside = teams["outside"]
    job_id = outside.rsplit("/", 1)[-1]
    for who in (OWN, "team-a"):
        status, jobs, _ = listed(tenancy, who)
        assert outside not in {j["name"] for j in jobs}
        before = len(tenancy.emulator_calls())
        reply = tenancy.client(who).get(f"{COLLECTION}/{job_id}")
        assert reply.status_code == 404 and len(tenancy.emulator_calls()) == before
        missing = tenancy.client(who).get(f"{COLLECTION}/{MISSING_ID}")
        assert reply.text.replace(job_id, "ID") == missing.text.replace(MISSING_ID, "ID")
    admin = tenancy.client("admin").get(f"{COLLECTION}/{job_id}")
    assert admin.status_code == 200 and admin.json()["name"] == outside


# --- property-based ----------------------------------------------------------------------------------------

FRAGMENTS = ["(", ")", "OR", "AND", "NOT", "-", '"', "'", "\\", "\\\"", "=", "!=", ":", "*", "<", ">=",
             "labels.vbp-team", "labels.vbp-key", "labels.VBP-team", f'"{OTHER}"', f'"{OWN}"', OTHER, OWN,
             "labels.vbp-team:*", f'labels.vbp-team="{OTHER}"', f"labels.vbp-team={OTHER}", "display_name",
             "display_name:*", 'state="JOB_STATE_PENDING"', "state", "JOB_STATE_RUNNING", "create_time",
             '"2020-01-01T00:00:00Z"', " ", "\t", "\n", "%", "+", ";", "&", ",", "\x00", "é"]
_BARE = re.compile(r"[\w.*][\w.*\-]*")
VALUES = [OWN, OTHER, "*", "", f"{OTHER}*", f"{OTHER}-job-0", f"{OWN}-job-*", 'a"b', "x' OR 'y",
          ") OR (labels.vbp-team:*", '" OR labels.vbp-team:* OR "', "\\", "JOB_STATE_PENDING"]


def _quoted(value: str, style: str) -> str:
    if style == "bare" and _BARE.fullmatch(value):
        return value
    quote = "'" if style == "single" else '"'
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


comparisons = st.one_of(
    st.builds(lambda field, op, value, style: f"{field}{op}{_quoted(value, style)}",
              st.sampled_from(["labels.vbp-team", "labels.vbp-key", "display_name", "labels.other"]),
              st.sampled_from(["=", "!=", ":"]), st.sampled_from(VALUES),
              st.sampled_from(["double", "single", "bare"])),
    st.sampled_from(["labels.vbp-team:*", "labels.vbp-key:*", 'state="JOB_STATE_PENDING"', "state!=JOB_STATE_RUNNING",
                     'create_time>"2020-01-01T00:00:00Z"']),
)
# Well-formed filters (so that most are accepted and really listed), made of what could widen the team clause.
expressions = st.recursive(comparisons, lambda inner: st.one_of(
    st.builds(lambda a, join, b: f"{a}{join}{b}", inner, st.sampled_from([" AND ", " OR ", " AND NOT ", " OR -"]),
              inner),
    inner.map(lambda e: f"({e})"),
    inner.map(lambda e: f"NOT {e}"),
    inner.map(lambda e: f"-{e}"),
), max_leaves=8)
# ... then broken in one place: a fragment inserted, or a character dropped.
mutated = st.builds(
    lambda text, at, fragment, drop: text[:at] + text[at + 1:] if drop else text[:at] + fragment + text[at:],
    expressions, st.integers(0, 120), st.sampled_from(FRAGMENTS), st.booleans())
hostile_filters = st.one_of(
    expressions, mutated,
    st.lists(st.sampled_from(FRAGMENTS), max_size=14).flatmap(
        lambda parts: st.sampled_from([" ", ""]).map(lambda sep: sep.join(parts))),
    st.text(max_size=30),
)
# Jobs with every kind of label a filter could confuse with the caller's.
CORPUS = [
    {"displayName": name, "state": state, "createTime": "2026-01-01T00:00:00Z", "labels": labels}
    for name in ("filt-a-job", "filt-b-job", "", "x")
    for state in ("JOB_STATE_PENDING", "JOB_STATE_SUCCEEDED")
    for labels in ({"vbp-team": OWN}, {"vbp-team": OTHER}, {}, {"vbp-team": OWN.upper()},
                   {"vbp-team": f"{OWN}-x"}, {"vbp-key": OWN}, {"vbp-team": ""})
]


@settings(max_examples=1500, deadline=None)
@given(text=hostile_filters)
def test_property_the_rewritten_filter_matches_only_the_teams_jobs(text: str) -> None:
    try:
        rewritten = team_filter(text, OWN)
    except InvalidArgument:
        event("refused")
        return
    event("rewritten")
    tree = filters.parse(rewritten)
    for job in CORPUS:
        if filters.evaluate(tree, job):
            assert job["labels"].get("vbp-team") == OWN, (text, rewritten, job)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hostile_filters)
def test_property_no_listed_job_belongs_to_another_team(tenancy: Tenancy, teams: dict[str, Any], text: str) -> None:
    status, jobs, calls = listed(tenancy, OWN, filter=text)
    event(f"status {status}, {'some' if jobs else 'no'} jobs listed")
    assert status in (200, 400)
    assert calls == (1 if status == 200 else 0)  # a refused filter never reaches Vertex
    assert_only_own(jobs)
    assert {j["name"] for j in jobs} <= teams["own"]
