"""Reading a gs:// input for an estimate, on fake-gcs-server: an object the job names in full costs ONE request (its
media GET, whose reply gives the size: no metadata GET first); a missing one estimates as empty with a note; an
object named twice (in full and by a wildcard) is read once; an object the deadline leaves unread is bounded by
the size asked for it then. The figures equal those of the same bytes read as a local file."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from proxy.budgets import inputs
from proxy.budgets.admission import BudgetGate
from proxy.budgets.estimate import MAX_LINES_PER_JOB, MIN_LINE_BYTES
from proxy.emulator.storage import FakeGcsServer
from proxy.settings import Settings

pytestmark = pytest.mark.slow

MODEL = "publishers/google/models/gemini-2.5-flash"
# lines of 3 sizes, so that lines straddle the reader's 2 MiB chunks at every offset
DATA = b"".join(json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "word " * (n % 3 * 40 + 7)}]}],
                                        "generationConfig": {"maxOutputTokens": 100 + n % 5}}}).encode() + b"\n"
                for n in range(30_000))


@pytest.fixture()
def client(fake_gcs: FakeGcsServer) -> Iterator[storage.Client]:
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    yield client
    client.close()


@pytest.fixture()
def bucket(client: storage.Client) -> str:
    name = f"estimate-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name).blob("in.jsonl").upload_from_string(DATA)
    return name


@pytest.fixture()
def gate(client: storage.Client) -> Iterator[BudgetGate]:
    gate = BudgetGate(Settings(estimate_seconds=600), None, storage_factory=lambda: client)  # type: ignore[arg-type]
    yield gate
    gate.close()


def calls(client: storage.Client) -> list[str]:
    """`METHOD path?query` of every request the client's session makes from now on."""
    seen: list[str] = []

    def record(reply: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.append(f"{reply.request.method} {reply.request.path_url}")

    client._http.hooks["response"].append(record)
    return seen


def job(*uris: str) -> dict[str, Any]:
    return {"model": MODEL, "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": list(uris)}}}


def test_an_object_named_in_full_is_read_with_one_request(client: storage.Client, bucket: str, gate: BudgetGate,
                                                          tmp_path: Path) -> None:
    assert len(DATA) > 3 * inputs.LOCAL_CHUNK_BYTES
    seen = calls(client)
    estimate = gate.estimate_job(job(f"gs://{bucket}/in.jsonl"))
    assert seen == [f"GET /download/storage/v1/b/{bucket}/o/in.jsonl?alt=media"]
    local = tmp_path / "in.jsonl"
    local.write_bytes(DATA)
    assert estimate.to_json() == inputs.estimate_file(local, gate.estimator(MODEL)).to_json()
    assert (estimate.lines, estimate.bytes_read, estimate.bytes_bounded) == (30_000, len(DATA), 0)


def test_a_missing_object_estimates_as_empty_and_an_object_named_twice_is_read_once(
        client: storage.Client, bucket: str, gate: BudgetGate) -> None:
    once = gate.estimate_job(job(f"gs://{bucket}/in.jsonl"))
    estimate = gate.estimate_job(job(f"gs://{bucket}/in.jsonl", f"gs://{bucket}/in*", f"gs://{bucket}/gone.jsonl"))
    assert estimate.notes == [f"gs://{bucket}/gone.jsonl names no object: it estimates as empty (Vertex fails such "
                              "a job at no cost)"]
    assert {**estimate.to_json(), "notes": []} == once.to_json()
    missing_bucket = gate.estimate_job(job("gs://no-such-bucket-here/in.jsonl"))
    assert (missing_bucket.lines, missing_bucket.high_pico, missing_bucket.notes) == (
        0, 0, ["gs://no-such-bucket-here/in.jsonl names no object: it estimates as empty (Vertex fails such a job "
               "at no cost)"])


def test_an_object_the_deadline_leaves_unread_is_bounded_by_its_size(client: storage.Client, bucket: str,
                                                                    gate: BudgetGate) -> None:
    objects, notes = inputs.input_objects(client, [f"gs://{bucket}/in.jsonl"])
    assert notes == [] and [(o.name, o.size) for o in objects] == [("in.jsonl", inputs.UNLISTED)]
    seen = calls(client)
    estimator = gate.estimator(MODEL)
    estimate = inputs.estimate_objects(client, objects, estimator, deadline=time.monotonic() - 1)
    assert seen == [f"GET /storage/v1/b/{bucket}/o/in.jsonl?projection=noAcl&prettyPrint=false"]  # its size only
    lines = min(len(DATA) // MIN_LINE_BYTES + 1, MAX_LINES_PER_JOB)  # 200,000: Vertex's most lines a job
    assert (estimate.lines, estimate.bytes_read, estimate.bytes_bounded) == (0, 0, len(DATA))
    assert estimate.max_output_tokens == lines * estimator.max_output == 200_000 * 65_536
