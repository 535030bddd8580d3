"""Reading output files from Cloud Storage (fake-gcs-server): listing, streaming bytes, metering a job."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from proxy.emulator.storage import FakeGcsServer
from proxy.metering.objects import fingerprint, iter_chunks, meter_objects
from proxy.metering.pricing import PricingTable
from proxy.money import to_decimal_usd
from proxy.providers.base import BucketMissing, OutputMissing, OutputReadError
from proxy.providers.vertex.outputs import list_output_objects

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO_PRICING = Path(__file__).resolve().parents[2] / "pricing"
GOOD = (b'{"status":"","request":{"contents":[{"parts":[{"text":"Hi"}]}]},"response":{"modelVersion":'
        b'"gemini-2.5-flash-lite","usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":%d}}}')
FAILED_ROW = b'{"status":"Bad Request: {\\"error\\": {\\"code\\": 400}}","request":{"contents":[]}}'
DIR = "out/prediction-model-2026-05-18T00:00:00.000000Z"


@pytest.fixture()
def client(fake_gcs: FakeGcsServer) -> storage.Client:
    return storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture()
def bucket(client: storage.Client) -> storage.Bucket:
    return client.create_bucket(f"metering-{uuid.uuid4().hex[:12]}")


def put(bucket: storage.Bucket, name: str, data: bytes) -> None:
    bucket.blob(name).upload_from_string(data, content_type="application/jsonl")


def test_lists_final_jsonl_objects_only(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/predictions_0002.jsonl", GOOD % (1, 1) + b"\n")
    put(bucket, f"{DIR}/predictions_0001.jsonl", GOOD % (2, 2) + b"\n")
    put(bucket, f"{DIR}/nested/predictions.jsonl", GOOD % (3, 3))
    put(bucket, f"{DIR}/incremental_predictions/predictions_0001.jsonl", GOOD % (4, 4))
    put(bucket, f"{DIR}/nested/incremental_predictions/predictions.jsonl", GOOD % (5, 5))
    put(bucket, f"{DIR}/errors.txt", b"x")
    put(bucket, f"{DIR}-2/predictions.jsonl", GOOD % (6, 6))  # a sibling directory sharing the prefix
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    assert [obj.name for obj in objects] == [f"{DIR}/nested/predictions.jsonl", f"{DIR}/predictions_0001.jsonl",
                                             f"{DIR}/predictions_0002.jsonl"]
    for obj in objects:
        blob = bucket.get_blob(obj.name)
        assert blob is not None
        assert (obj.bucket, obj.generation, obj.size) == (bucket.name, blob.generation, blob.size)
    assert list_output_objects(client, f"gs://{bucket.name}/{DIR}/") == objects
    assert list_output_objects(client, f"gs://{bucket.name}/nothing-here") == []


def test_fingerprint_changes_when_an_object_changes(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/a.jsonl", GOOD % (1, 1))
    put(bucket, f"{DIR}/b.jsonl", GOOD % (2, 2))
    listed = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    first = fingerprint(listed)
    assert fingerprint(reversed(listed)) == first == fingerprint(list_output_objects(client, f"gs://{bucket.name}/{DIR}"))
    put(bucket, f"{DIR}/b.jsonl", GOOD % (2, 2))  # same bytes, new generation
    assert fingerprint(list_output_objects(client, f"gs://{bucket.name}/{DIR}")) != first
    put(bucket, f"{DIR}/c.jsonl", GOOD % (3, 3))
    assert len({first, fingerprint(list_output_objects(client, f"gs://{bucket.name}/{DIR}"))}) == 2


def test_iter_chunks_streams_the_object_in_chunks(client: storage.Client, bucket: storage.Bucket) -> None:
    rows = [GOOD % (n, n * 2) for n in range(1, 400)]
    text = b"\n".join(rows[:200]) + b"\r\n\r\n" + b"\r\n".join(rows[200:])
    put(bucket, f"{DIR}/predictions.jsonl", text)
    (obj,) = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    assert obj.size == len(text)
    for chunk_bytes in (37, 1000, 64 * 1024, 8 * 1024 * 1024):
        chunks = list(iter_chunks(client, obj, chunk_bytes=chunk_bytes))
        assert b"".join(chunks) == text
        assert all(len(chunk) == chunk_bytes for chunk in chunks[:-1])
    # Stopping early stops the reader.
    chunks = iter_chunks(client, obj, chunk_bytes=100)
    assert next(chunks) == text[:100]
    chunks.close()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("gcs-read")]


def test_a_short_read_is_an_error(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/predictions.jsonl", GOOD % (1, 1) + b"\n" + GOOD % (2, 2))
    (obj,) = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    longer = dataclasses.replace(obj, size=obj.size + 10)  # as if the connection ended 10 bytes early
    with pytest.raises(OutputReadError, match=f"got {obj.size} of {obj.size + 10} bytes"):
        list(iter_chunks(client, longer))


def test_a_replaced_object_is_not_read_as_the_listed_one(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/predictions.jsonl", GOOD % (1, 1))
    (obj,) = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    put(bucket, f"{DIR}/predictions.jsonl", GOOD % (2, 2) + b"\n" + GOOD % (3, 3))
    with pytest.raises(OutputMissing):
        list(iter_chunks(client, obj))


def test_a_missing_bucket_is_reported_apart_from_a_replaced_object(client: storage.Client) -> None:
    name = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BucketMissing, match=f"^the output bucket gs://{name} does not exist$") as raised:
        list_output_objects(client, f"gs://{name}/{DIR}")
    assert raised.value.bucket == name and isinstance(raised.value, OutputMissing)


def test_an_existing_bucket_without_the_folder_lists_nothing(client: storage.Client, bucket: storage.Bucket) -> None:
    assert list_output_objects(client, f"gs://{bucket.name}/never-written") == []


def test_meter_a_job_of_several_objects(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/predictions_0001.jsonl",
        b"\n".join([GOOD % (9, 10), FAILED_ROW, b'{"status":"","response":{"truncated":']) + b"\n")
    put(bucket, f"{DIR}/predictions_0002.jsonl", b"\r\n".join([GOOD % (9, 9), b"[]", b'{"status":""}', b""]))
    put(bucket, f"{DIR}/incremental_predictions/predictions.jsonl", GOOD % (10**6, 10**6))
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    rates = PricingTable.load(REPO_PRICING).rates_for("vertex", "gemini-2.5-flash-lite", datetime.now(UTC))
    assert rates is not None
    totals = meter_objects(client, objects, rates=rates, chunk_bytes=50)
    # 18 prompt tokens at 0.05 and 19 output tokens at 0.20 per 1M.
    expected = (Decimal(18) * Decimal("0.05") + Decimal(19) * Decimal("0.20")) / 1_000_000
    assert totals.cost_pico is not None
    assert to_decimal_usd(totals.cost_pico) == expected == Decimal("0.0000047")
    record = totals.to_dict()
    assert record["lines"] == {"succeeded": 2, "failed": 1, "malformed": 2, "no_usage": 1}
    assert (record["tokens"]["prompt"], record["tokens"]["candidates"]) == (18, 19)
    assert record["model_versions"] == {"gemini-2.5-flash-lite": 2}
    first, second = record["problems"]
    assert first.startswith(f"gs://{bucket.name}/{DIR}/predictions_0001.jsonl row 3: ")
    assert second.startswith(f"gs://{bucket.name}/{DIR}/predictions_0002.jsonl row 2: ")
    unpriced = meter_objects(client, objects, rates=None)
    assert unpriced.cost_pico is None
    assert unpriced.to_dict()["lines"] == record["lines"]


def _many() -> Iterator[bytes]:
    yield from (GOOD % (n, 1) + b"\n" for n in range(5000))


def test_meter_a_larger_object_across_many_chunks(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/predictions.jsonl", b"".join(_many()))
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    rates = PricingTable.load(REPO_PRICING).rates_for("vertex", "gemini-2.5-flash-lite", datetime.now(UTC))
    assert rates is not None
    totals = meter_objects(client, objects, rates=rates, chunk_bytes=4096)
    prompt = sum(range(5000))
    assert (totals.succeeded, totals.prompt, totals.candidates) == (5000, prompt, 5000)
    assert totals.cost_pico is not None
    assert to_decimal_usd(totals.cost_pico) == (Decimal(prompt) * Decimal("0.05") + 5000 * Decimal("0.20")) / 10**6
