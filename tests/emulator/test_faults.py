"""Fault injection, over HTTP and in-process, and the request log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from google.cloud import storage

from proxy.emulator.stack import EmulatorStack
from tests.emulator.support import COLLECTION, create, envelope, job_body, output_rows, upload_lines, wait_done

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def _user(text: str) -> dict[str, object]:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}]}}


@pytest.fixture(autouse=True)
def clean(stack: EmulatorStack) -> Iterator[None]:
    stack.reset()
    yield
    stack.reset()


def test_faults_over_http(stack: EmulatorStack, http: httpx.Client) -> None:
    document = {"errors": [{"status": 429, "count": 2, "method": "get"}], "latency": 0}
    reply = httpx.post(f"{stack.base_url}/_emulator/faults", json=document)
    assert reply.status_code == 200
    assert reply.json()["errors"] == [{"status": 429, "method": "get", "count": 2}]
    assert httpx.get(f"{stack.base_url}/_emulator/faults").json() == reply.json()
    job = f"{COLLECTION}/1234567890123456789"
    assert "injected" in envelope(http.get(job), 429, "RESOURCE_EXHAUSTED")
    envelope(http.get(job), 429, "RESOURCE_EXHAUSTED")
    envelope(http.get(job), 404, "NOT_FOUND")  # the count is used up
    assert http.get(COLLECTION).status_code == 200  # list was never affected

    assert httpx.post(f"{stack.base_url}/_emulator/reset").json() == {}
    assert httpx.get(f"{stack.base_url}/_emulator/requests").json() == {"requests": []}
    assert httpx.get(f"{stack.base_url}/_emulator/faults").json()["errors"] == []


@pytest.mark.parametrize("document", [
    {"errors": [{"status": 418, "count": 1}]},
    {"errors": [{"status": 503}]},
    {"errors": [{"status": 503, "rate": 2}]},
    {"errors": [{"status": 503, "rate": 0.5, "method": "explode"}]},
    {"failed_row_share": 1.5},
    {"output_shards": 0},
    {"large_output": {"rows": 10}},
    {"latency": -1},
    {"fail_jobs": "yes"},
    {"surprise": True},
])
def test_bad_fault_documents_are_400(stack: EmulatorStack, document: dict[str, object]) -> None:
    envelope(httpx.post(f"{stack.base_url}/_emulator/faults", json=document), 400, "INVALID_ARGUMENT")


def test_a_rate_fails_an_exact_share_of_calls(stack: EmulatorStack, http: httpx.Client) -> None:
    stack.set_faults(errors=[{"status": 503, "rate": 0.5, "method": "list"}])
    statuses = [http.get(COLLECTION).status_code for _ in range(6)]
    assert statuses == [200, 503, 200, 503, 200, 503]
    stack.set_faults(errors=[{"status": 503, "rate": 1.0}])
    envelope(http.get(COLLECTION), 503, "UNAVAILABLE")
    envelope(http.post(COLLECTION, json={}), 503, "UNAVAILABLE")


def test_latency_delays_every_call(stack: EmulatorStack, http: httpx.Client) -> None:
    stack.set_faults(latency=0.3)
    started = time.monotonic()
    assert http.get(COLLECTION).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fail_jobs(stack: EmulatorStack, http: httpx.Client, bucket: storage.Bucket) -> None:
    stack.set_faults(fail_jobs=True)
    job = create(http, job_body(upload_lines(bucket, [_user("Hi")]), bucket))
    done = wait_done(http, job["name"])
    assert done["state"] == "JOB_STATE_FAILED"
    assert done["error"]["code"] == 13
    assert output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"]) == []


def test_failed_row_share(stack: EmulatorStack, http: httpx.Client, bucket: storage.Bucket) -> None:
    stack.set_faults(failed_row_share=0.25)
    lines = [{"custom_id": str(i), **_user(f"question {i}")} for i in range(8)]
    done = wait_done(http, create(http, job_body(upload_lines(bucket, lines), bucket))["name"])
    assert done["completionStats"] == {"successfulCount": "6", "failedCount": "2"}
    rows = output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"])
    failed = [row for row in rows if row["status"]]
    assert len(rows) == 8 and len(failed) == 2
    assert all("response" not in row and "RESOURCE_EXHAUSTED" in row["status"] for row in failed)


def test_output_shards(stack: EmulatorStack, http: httpx.Client, bucket: storage.Bucket) -> None:
    stack.set_faults(output_shards=3)
    lines = [{"custom_id": str(i), **_user(f"question {i}")} for i in range(7)]
    done = wait_done(http, create(http, job_body(upload_lines(bucket, lines), bucket))["name"])
    directory = done["outputInfo"]["gcsOutputDirectory"]
    prefix = directory.removeprefix(f"gs://{bucket.name}/")
    files = {blob.name.removeprefix(prefix + "/"): blob.download_as_text().count("\n")
             for blob in bucket.client.list_blobs(bucket.name, prefix=prefix + "/")}
    assert files == {"predictions_00001.jsonl": 3, "predictions_00002.jsonl": 2, "predictions_00003.jsonl": 2}
    assert sorted(row["custom_id"] for row in output_rows(bucket, directory)) == [str(i) for i in range(7)]


def test_incremental_copy(stack: EmulatorStack, http: httpx.Client, bucket: storage.Bucket) -> None:
    stack.set_faults(incremental_copy=True)
    lines = [{"custom_id": str(i), **_user(f"question {i}")} for i in range(5)]
    done = wait_done(http, create(http, job_body(upload_lines(bucket, lines), bucket))["name"])
    directory = done["outputInfo"]["gcsOutputDirectory"]
    final = output_rows(bucket, directory)
    everything = output_rows(bucket, directory, include_incremental=True)
    assert len(final) == 5
    assert len(everything) == 5 + 3  # rows 1, 3 and 5 also sit in incremental_predictions/
    copy = bucket.get_blob(directory.removeprefix(f"gs://{bucket.name}/")
                           + "/incremental_predictions/predictions.jsonl")
    assert copy is not None


def test_large_output(stack: EmulatorStack, http: httpx.Client, bucket: storage.Bucket) -> None:
    stack.set_faults(large_output={"rows": 3000, "row_bytes": 1000}, failed_row_share=0.1, output_shards=2)
    done = wait_done(http, create(http, job_body("gs://not-read/at-all.jsonl", bucket))["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    assert done["completionStats"] == {"successfulCount": "2700", "failedCount": "300"}
    directory = done["outputInfo"]["gcsOutputDirectory"].removeprefix(f"gs://{bucket.name}/")
    blobs = list(bucket.client.list_blobs(bucket.name, prefix=directory + "/"))
    assert len(blobs) == 2
    lines = [line for blob in blobs for line in blob.download_as_bytes().splitlines()]
    assert len(lines) == 3000
    assert all(900 <= len(line) + 1 <= 1100 for line in lines if b'"response"' in line)
    rows = [json.loads(line) for line in lines]
    assert sorted(row["custom_id"] for row in rows) == [f"row-{i:09d}" for i in range(3000)]
    usage = {json.dumps(row["response"]["usageMetadata"]) for row in rows if "response" in row}
    assert len(usage) == 1  # every generated row asks the same thing


def test_the_request_log_records_calls(stack: EmulatorStack, http: httpx.Client) -> None:
    http.get(COLLECTION, params={"filter": 'state="JOB_STATE_RUNNING"'}, headers={"X-Test-Marker": "m-1"})
    http.post(COLLECTION, content=b"{broken", headers={"X-Test-Marker": "m-2"})
    entries = stack.request_log
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("GET", COLLECTION, 200), ("POST", COLLECTION, 400)]
    assert entries[0]["query"] == 'filter=state="JOB_STATE_RUNNING"'
    assert entries[0]["headers"]["x-test-marker"] == "m-1"
    assert entries[0]["headers"]["authorization"].startswith("Bearer ya29.")
    assert entries[1]["body"] == "{broken"
    assert httpx.get(f"{stack.base_url}/_emulator/requests").json()["requests"] == entries
