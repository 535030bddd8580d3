"""The faults a soak's storm needs: Retry-After on 429/503, a held reply, a reset connection (before or after the
call took effect), and Cloud Storage reads stalled by the storage front."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from google.cloud import storage

from proxy.emulator.stack import EmulatorStack
from tests.emulator.conftest import JOB_SECONDS
from tests.emulator.support import COLLECTION, create, envelope, job_body, upload_lines

# Runs the emulator: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fronted() -> Iterator[EmulatorStack]:
    """An emulator whose Cloud Storage is reached through its front (`--storage-faults`)."""
    with EmulatorStack(job_seconds=JOB_SECONDS, storage_faults=True) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(stack: EmulatorStack) -> Iterator[None]:
    stack.reset()
    yield
    stack.reset()


def _job_ids(stack: EmulatorStack) -> set[str]:
    return {job.job_id for job in stack.state.jobs.all()}


def test_429_and_503_carry_retry_after(stack: EmulatorStack, http: httpx.Client) -> None:
    stack.set_faults(errors=[{"status": 429, "count": 1, "retry_after": 7},
                             {"status": 503, "count": 1, "retry_after": 0}])
    first, second = http.get(COLLECTION), http.get(COLLECTION)
    envelope(first, 429, "RESOURCE_EXHAUSTED")
    envelope(second, 503, "UNAVAILABLE")
    assert (first.headers["retry-after"], second.headers["retry-after"]) == ("7", "0")
    assert "retry-after" not in http.get(COLLECTION).headers


def test_a_timeout_holds_the_reply_then_answers_504_without_serving(stack: EmulatorStack, http: httpx.Client,
                                                                    bucket: storage.Bucket) -> None:
    body = job_body(upload_lines(bucket, [{"request": {"contents": []}}]), bucket)
    before = _job_ids(stack)
    stack.set_faults(errors=[{"fault": "timeout", "seconds": 0.5, "count": 1, "method": "create"}])
    started = time.monotonic()
    envelope(http.post(COLLECTION, json=body), 504, "DEADLINE_EXCEEDED")
    assert time.monotonic() - started >= 0.5
    assert _job_ids(stack) == before  # nothing was made
    stack.set_faults(errors=[{"fault": "timeout", "seconds": 0.6, "count": 1}])
    with pytest.raises(httpx.ReadTimeout):  # a client with a shorter deadline gives up first
        http.post(COLLECTION, json=body, timeout=0.2)
    assert _job_ids(stack) == before


def test_a_timeout_after_serving_makes_the_job_and_answers_it_late(stack: EmulatorStack, http: httpx.Client,
                                                                   bucket: storage.Bucket) -> None:
    body = job_body(upload_lines(bucket, [{"request": {"contents": []}}]), bucket)
    before = _job_ids(stack)
    stack.set_faults(errors=[{"fault": "timeout", "seconds": 0.6, "count": 1, "after_serving": True}])
    with pytest.raises(httpx.ReadTimeout):
        http.post(COLLECTION, json=body, timeout=0.2)
    [made] = _job_ids(stack) - before  # the create took effect; only its reply was late
    assert stack.state.jobs.all()[-1].job_id == made


@pytest.mark.parametrize("after_serving", [False, True], ids=["before", "after-serving"])
def test_a_reset_cuts_the_connection(stack: EmulatorStack, http: httpx.Client, bucket: storage.Bucket,
                                     after_serving: bool) -> None:
    body = job_body(upload_lines(bucket, [{"request": {"contents": []}}]), bucket)
    before = _job_ids(stack)
    stack.set_faults(errors=[{"fault": "reset", "count": 1, "method": "create", "after_serving": after_serving}])
    with pytest.raises(httpx.ReadError, match="Connection reset by peer"):
        http.post(COLLECTION, json=body)
    assert len(_job_ids(stack) - before) == (1 if after_serving else 0)
    assert [e["status"] for e in stack.request_log] == [None]  # logged as cut, not as an answer
    assert create(http, body)["state"] == "JOB_STATE_PENDING"  # the next call, on a new connection, is served


@pytest.mark.parametrize("document", [
    {"errors": [{"fault": "timeout", "count": 1}]},                 # a timeout needs its seconds
    {"errors": [{"fault": "reset", "seconds": 1, "count": 1}]},     # only a timeout takes seconds
    {"errors": [{"fault": "hang", "count": 1}]},
    {"errors": [{"status": 503, "fault": "reset", "count": 1}]},    # one or the other
    {"errors": [{"status": 500, "retry_after": 1, "count": 1}]},    # Retry-After goes with 429/503
    {"errors": [{"status": 429, "count": 1, "after_serving": "yes"}]},
    {"storage_stall": {"rate": 0.5}},
    {"storage_stall": {"seconds": 1, "sometimes": True}},
])
def test_bad_network_fault_documents_are_400(stack: EmulatorStack, document: dict[str, object]) -> None:
    envelope(httpx.post(f"{stack.base_url}/_emulator/faults", json=document), 400, "INVALID_ARGUMENT")


def test_storage_stall_needs_the_front(stack: EmulatorStack) -> None:
    reply = httpx.post(f"{stack.base_url}/_emulator/faults", json={"storage_stall": {"seconds": 1}})
    assert "--storage-faults" in envelope(reply, 400, "INVALID_ARGUMENT")
    assert stack.gcs is not None and stack.env["STORAGE_EMULATOR_HOST"] == stack.gcs.url  # no front by default


def test_the_front_stalls_the_chosen_object_reads_and_passes_the_rest(fronted: EmulatorStack) -> None:
    assert fronted.gcs is not None and fronted.env["STORAGE_EMULATOR_HOST"] != fronted.gcs.url
    client = fronted.storage_client()
    bucket = client.create_bucket("front-tests")
    content = b"".join(b'{"row": %d, "pad": "%s"}\n' % (i, b"x" * 200) for i in range(2000))
    bucket.blob("out/predictions.jsonl").upload_from_string(content)
    reply = httpx.post(f"{fronted.base_url}/_emulator/faults",
                       json={"storage_stall": {"seconds": 0.8, "rate": 0.5}})
    assert reply.json()["storage_stall"] == {"seconds": 0.8, "rate": 0.5}
    timings = []
    for _ in range(4):
        started = time.monotonic()
        assert bucket.blob("out/predictions.jsonl").download_as_bytes() == content
        timings.append(time.monotonic() - started >= 0.8)
    assert timings == [False, True, False, True]  # every second read, exactly
    started = time.monotonic()
    assert [blob.name for blob in client.list_blobs("front-tests")] == ["out/predictions.jsonl"]
    assert time.monotonic() - started < 0.8  # listings are not object reads
    fronted.set_faults()
    started = time.monotonic()
    assert bucket.blob("out/predictions.jsonl").download_as_bytes() == content
    assert time.monotonic() - started < 0.8
