"""VBP_PROJECT_POOLS on the native door, on the emulator: a create naming the pool is placed on one of its
project/locations whatever location the caller wrote, failing members are routed around, and the job is then
addressed by the real name its create answered."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from proxy.emulator.jobs import project_number
from proxy.ledger.models import Job, Placement, PlacementTarget
from proxy.tenancy.keys import create_key
from tests.metering.completion.conftest import text_line
from tests.providers.vertex.conftest import Proxied, running

pytestmark = pytest.mark.slow  # the emulator and a proxy server

POOL = {"pool-gemini": (("proj-a", "us-central1"), ("proj-b", "europe-west4"))}
A = f"projects/{project_number('proj-a')}/locations/us-central1/batchPredictionJobs/"
B = f"projects/{project_number('proj-b')}/locations/europe-west4/batchPredictionJobs/"


@pytest.fixture
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("pools"), teams=("team-a",), project_pools=POOL,
                 job_seconds=60) as env:
        env.bucket("my-bucket").blob("pool/in.jsonl").upload_from_string(json.dumps(text_line("Hello world!")) + "\n")
        yield env


def _body(n: int) -> dict[str, object]:
    return {"displayName": f"pooled-{n}", "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://my-bucket/pool/in.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://my-bucket/pool/out-{n}/"}}}


def _create(env: Proxied, n: int, *, who: str = "team-a", location: str = "asia-east1") -> dict[str, object]:
    with env.client(who) as client:
        reply = client.post(f"/v1/projects/pool-gemini/locations/{location}/batchPredictionJobs", json=_body(n))
    return {"status": reply.status_code, "body": reply.json(), "headers": reply.headers}


def _creates_upstream(env: Proxied) -> Counter[str]:
    return Counter(str(c["path"]).split("/batchPredictionJobs")[0] for c in env.emulator_calls()
                   if c["method"] == "POST")


def test_creates_spread_over_the_pool_and_answer_the_real_name(pooled: Proxied) -> None:
    names = []
    for n in range(4):
        reply = _create(pooled, n)
        assert reply["status"] == 200, reply
        names.append(str(reply["body"]["name"]))  # type: ignore[index]
    # equal members, equal batches (3 queued tokens each): they alternate, the pool's order breaking ties
    assert [name[:len(A)] if name.startswith(A) else name[:len(B)] for name in names] == [A, B, A, B]
    assert _creates_upstream(pooled) == {"/v1/projects/proj-a/locations/us-central1": 2,
                                         "/v1/projects/proj-b/locations/europe-west4": 2}
    with pooled.sessions() as session:
        jobs = {job.name: (job.project, job.location) for job in session.scalars(select(Job))}
        placed = Counter((p.target, p.state, p.tokens) for p in session.scalars(select(Placement)))
    assert jobs[names[0]] == ("proj-a", "us-central1") and jobs[names[1]] == ("proj-b", "europe-west4")
    assert placed == {("vertex:proj-a/us-central1", "placed", 3): 2, ("vertex:proj-b/europe-west4", "placed", 3): 2}
    # get, cancel and list then work on the real name, as for any job
    with pooled.client() as client:
        assert client.get(f"/v1/{names[1]}").json()["name"] == names[1]
        assert client.post(f"/v1/{names[1]}:cancel").status_code == 200
        listed = client.get("/v1/projects/proj-b/locations/europe-west4/batchPredictionJobs").json()
    assert sorted(job["name"] for job in listed["batchPredictionJobs"]) == sorted([names[1], names[3]])
    with pooled.client() as client:
        metrics = client.get("/metrics").text
    assert 'vbp_placements{state="placed",target="vertex:proj-a/us-central1"} 2.0' in metrics
    assert 'vbp_placement_queued_tokens{model="",provider="vertex",target="vertex:proj-a/us-central1"} 6.0' in metrics


def test_a_key_scoped_to_the_pool_reaches_its_jobs_and_the_pool_path_is_for_creates(pooled: Proxied) -> None:
    with pooled.sessions.begin() as session:
        pooled.keys["pool-only"] = create_key(session, team="team-a", projects=["pool-gemini"])[1]
    name = str(_create(pooled, 0, who="pool-only")["body"]["name"])  # type: ignore[index]
    with pooled.client("pool-only") as client:
        assert client.get(f"/v1/{name}").status_code == 200
        listed = client.get("/v1/projects/pool-gemini/locations/us-central1/batchPredictionJobs")
    assert (listed.status_code, listed.json()["error"]["message"]) == (400, (
        "pool-gemini is a pool of projects (VBP_PROJECT_POOLS): address a job by the name its create answered, in "
        "one of proj-a/us-central1, proj-b/europe-west4."))


def test_a_key_scoped_to_one_location_is_placed_only_there(pooled: Proxied) -> None:
    with pooled.sessions.begin() as session:
        pooled.keys["europe"] = create_key(session, team="team-a", locations=["europe-west4"])[1]
    names = [str(_create(pooled, n, who="europe", location="us-central1")["body"]["name"])  # type: ignore[index]
             for n in range(3)]
    assert all(name.startswith(B) for name in names)


def test_a_failing_member_is_routed_around_then_cools_down(pooled: Proxied) -> None:
    pooled.stack.set_faults(errors=[{"status": 503, "method": "create", "path": "/v1/projects/proj-a/",
                                            "rate": 1.0}])
    replies = [_create(pooled, n) for n in range(5)]
    assert [r["status"] for r in replies] == [200] * 5
    assert all(str(r["body"]["name"]).startswith(B) for r in replies)  # type: ignore[index]
    # proj-a was tried until its breaker opened (3 consecutive failures), then skipped
    assert _creates_upstream(pooled) == {"/v1/projects/proj-a/locations/us-central1": 3,
                                         "/v1/projects/proj-b/locations/europe-west4": 5}
    with pooled.sessions() as session:
        row = session.get(PlacementTarget, "vertex:proj-a/us-central1")
        assert row is not None and (row.failures, row.last_outcome) == (3, "failed")
        assert row.open_until is not None


def test_every_member_failing_is_429_with_retry_after_and_nothing_recorded(pooled: Proxied) -> None:
    pooled.stack.set_faults(errors=[{"status": 503, "method": "create", "retry_after": 20,
                                    "rate": 1.0}])
    reply = _create(pooled, 0)
    assert reply["status"] == 429
    assert reply["headers"]["retry-after"] == "20"  # type: ignore[index]
    assert reply["body"] == {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": (  # type: ignore[comparison-overlap]
        "No deployment of publishers/google/models/gemini-2.5-flash can take this batch of 3 queued tokens now "
        "(vertex:proj-a/us-central1, vertex:proj-b/europe-west4 refused it). vertex:proj-a/us-central1: 503 The "
        "service is currently unavailable (injected by the emulator). vertex:proj-b/europe-west4: 503 The service is "
        "currently unavailable (injected by the emulator). Pool 'pool-gemini'.")}}
    with pooled.sessions() as session:
        assert session.scalars(select(Job)).all() == []
        assert {p.state for p in session.scalars(select(Placement))} == {"released"}
