"""Metering by byte range in worker processes: every line counted once, whatever the cuts, against fake-gcs-server."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from proxy.emulator.storage import FakeGcsServer, free_port
from proxy.metering.objects import media_url, meter_objects
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.ranges import ByteRange, RangeMeter, RangeTask, count_range, owned_chunks, plan_ranges
from proxy.money import to_decimal_usd
from proxy.providers.base import OutputMissing, OutputObject, OutputReadError
from proxy.providers.vertex.outputs import list_output_objects
from tests.metering.test_scanner import random_row

DIR = "out/prediction-model-2026-05-18T00:00:00.000000Z"
ROW = (b'{"status":"","request":{"contents":[{"parts":[{"text":"%s"}]}]},"response":{"modelVersion":"m",'
       b'"usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":%d}}}')


def rates(model: str) -> Rates:
    found = PricingTable.load(Path(__file__).resolve().parents[2] / "pricing").rates_for(
        "vertex", model, datetime(2026, 6, 1, tzinfo=UTC))
    assert found is not None
    return found


@pytest.fixture()
def client(fake_gcs: FakeGcsServer) -> storage.Client:
    return storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture()
def bucket(client: storage.Client) -> storage.Bucket:
    return client.create_bucket(f"ranges-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def range_meter() -> Iterator[RangeMeter]:
    meter = RangeMeter(processes=2, min_bytes=2000)
    meter.start()
    yield meter
    meter.close()


def put(bucket: storage.Bucket, name: str, data: bytes) -> OutputObject:
    bucket.blob(name).upload_from_string(data, content_type="application/jsonl")
    blob = bucket.get_blob(name)
    assert blob is not None and blob.generation is not None and blob.size is not None
    return OutputObject(bucket.name, name, int(blob.generation), int(blob.size))


@pytest.mark.parametrize("tail_bytes", [1, 2, 64 * 1024])
def test_every_line_belongs_to_exactly_one_range_wherever_the_cuts_fall(tail_bytes: int) -> None:
    text = b'{"a":1}\n\n{"bb":22}\r\n{"ccc":333}\n\n\n{"d":4}'  # blank lines, CRLF, no newline at the end
    obj = OutputObject("b", "o.jsonl", 1, len(text))
    reads: list[tuple[int, int]] = []

    def read(first: int, stop: int) -> Iterator[bytes]:  # the object's bytes, in small pieces like a stream
        reads.append((first, stop))
        yield from (text[at:min(stop, at + 3)] for at in range(first, stop, 3))

    for first_cut in range(len(text) + 1):
        for second_cut in range(first_cut, len(text) + 1):
            cuts = sorted({0, first_cut, second_cut, len(text)})
            parts = []
            for start, stop in zip(cuts, cuts[1:], strict=False):
                if stop > start:
                    reads.clear()
                    parts.append(b"".join(owned_chunks(read, ByteRange(obj, start, stop), tail_bytes=tail_bytes)))
                    if tail_bytes > len(text):
                        assert reads == [(max(0, start - 1), len(text))], (cuts, start)  # one GET per range
            assert b"".join(parts) == text, cuts
            # Each part is whole lines: it starts where a line starts.
            offsets = [sum(map(len, parts[:index])) for index in range(len(parts))]
            starts = [at for at, part in zip(offsets, parts, strict=True) if part]
            assert all(at == 0 or text[at - 1] == ord("\n") for at in starts), cuts


def test_a_line_longer_than_the_tail_is_read_to_its_end_in_growing_reads() -> None:
    text = b"a" * 100 + b"\n" + b"b" * 10 + b"\n"
    obj = OutputObject("b", "o.jsonl", 1, len(text))
    reads: list[tuple[int, int]] = []

    def read(first: int, stop: int) -> Iterator[bytes]:
        reads.append((first, stop))
        yield text[first:stop]

    assert b"".join(owned_chunks(read, ByteRange(obj, 0, 10), tail_bytes=4)) == text[:101]
    assert reads == [(0, 14), (14, 22), (22, 38), (38, 70), (70, 112)]  # 4 past the end, then 8, 16, 32, 64
    reads.clear()
    assert b"".join(owned_chunks(read, ByteRange(obj, 10, 112), tail_bytes=4)) == text[101:]
    assert reads == [(9, 112)]


def test_plan_ranges_covers_each_object_once() -> None:
    objects = [OutputObject("b", f"o{n}.jsonl", 1, size) for n, size in enumerate([0, 10, 1000, 5001])]
    ranges = plan_ranges(objects, parts=8, min_bytes=500)
    for obj in objects:
        mine = [(r.start, r.stop) for r in ranges if r.obj == obj]
        if obj.size == 0:
            assert mine == []
            continue
        assert mine[0][0] == 0 and mine[-1][1] == obj.size
        assert all(stop == next_start for (_, stop), (next_start, _) in zip(mine, mine[1:], strict=False))
        assert all(stop - start >= min(500, obj.size) for start, stop in mine)
    # 6,011 bytes in about 8 parts: ranges of about 752 bytes, so 1 + 1 + round(5001 / 752) = 7 ranges.
    assert len(ranges) == 1 + 1 + 7


@pytest.mark.slow
def test_ranges_in_worker_processes_meter_what_one_process_meters(
        client: storage.Client, bucket: storage.Bucket, range_meter: RangeMeter) -> None:
    rng = random.Random(5)
    lines = [random_row(rng) for _ in range(1500)]
    put(bucket, f"{DIR}/predictions_0001.jsonl", b"\n".join(lines[:1000]))
    put(bucket, f"{DIR}/predictions_0002.jsonl", b"\r\n".join(lines[1000:]) + b"\r\n")
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    pro = rates("gemini-2.5-pro")
    whole = meter_objects(client, objects, rates=pro)
    assert sum(obj.size for obj in objects) > 40 * range_meter.min_bytes  # so many ranges per object
    by_range = range_meter.meter(client, objects, rates=pro)
    assert by_range.to_dict() | {"problems": []} == whole.to_dict() | {"problems": []}
    assert by_range.lines == len(lines)
    # Malformed lines are reported at their row in the object, as one process would report them.
    assert sorted(by_range.problems) == sorted(whole.problems)
    assert len(whole.problems) == 20


@pytest.mark.slow
def test_a_large_object_by_range_to_the_exact_cost(
        client: storage.Client, bucket: storage.Bucket, range_meter: RangeMeter) -> None:
    rows = [ROW % (b"x" * (n % 97), n, n % 13) for n in range(4000)]
    put(bucket, f"{DIR}/predictions.jsonl", b"\n".join(rows) + b"\n")
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    totals = range_meter.meter(client, objects, rates=rates("gemini-2.5-flash-lite"))
    prompt, output = sum(range(4000)), sum(n % 13 for n in range(4000))
    assert (totals.succeeded, totals.prompt, totals.candidates) == (4000, prompt, output)
    assert to_decimal_usd(totals.cost_pico or 0) == (prompt * Decimal("0.05") + output * Decimal("0.20")) / 10**6
    assert totals.model_versions == {"m": 4000}


@pytest.mark.slow
def test_a_small_output_is_metered_in_this_process(client: storage.Client, bucket: storage.Bucket) -> None:
    put(bucket, f"{DIR}/predictions.jsonl", ROW % (b"hi", 3, 4) + b"\n")
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    meter = RangeMeter(processes=2)  # 32 MiB ranges: far above this output
    totals = meter.meter(client, objects, rates=rates("gemini-2.5-flash-lite"))
    assert (totals.succeeded, totals.prompt, totals.candidates) == (1, 3, 4)
    assert meter._pool is None  # no worker was started for it


@pytest.mark.slow
def test_a_replaced_object_is_missing_in_the_worker_too(client: storage.Client, bucket: storage.Bucket) -> None:
    obj = put(bucket, f"{DIR}/predictions.jsonl", ROW % (b"a", 1, 1) + b"\n")
    put(bucket, f"{DIR}/predictions.jsonl", ROW % (b"b", 2, 2) + b"\n")  # a new generation
    task = RangeTask(ByteRange(obj, 0, obj.size), media_url(client, obj), {}, None, 1024)
    with pytest.raises(OutputMissing):
        count_range(task)
    longer = dataclasses.replace(obj, size=obj.size * 2)
    current = list_output_objects(client, f"gs://{bucket.name}/{DIR}")[0]
    task = RangeTask(ByteRange(longer, 0, longer.size), media_url(client, current), {}, None, 1024)
    with pytest.raises(Exception, match="range|bytes"):
        count_range(task)  # a range past the object's end is an error, never a silent short count


@pytest.mark.slow
def test_the_workers_read_through_the_proxy_the_environment_names(
        client: storage.Client, bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [ROW % (b"x" * (n % 97), n, 1) for n in range(400)]
    put(bucket, f"{DIR}/predictions.jsonl", b"\n".join(rows) + b"\n")
    objects = list_output_objects(client, f"gs://{bucket.name}/{DIR}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for bypass, works in [(None, False), ("127.0.0.1", True)]:
        if bypass:
            monkeypatch.setenv("NO_PROXY", bypass)
        meter = RangeMeter(processes=2, min_bytes=2000)  # its workers start with this environment
        try:
            if works:
                assert meter.meter(client, objects, rates=None).prompt == sum(range(400))
            else:
                with pytest.raises(OutputReadError, match="(?i)proxy"):  # retried by the metering, as any failed read
                    meter.meter(client, objects, rates=None)
        finally:
            meter.close()


def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie that nobody has reaped yet does not)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


PARENT = """
import multiprocessing, time
from proxy.metering.ranges import RangeMeter
RangeMeter(processes=2).start()
print(*(child.pid for child in multiprocessing.active_children()), flush=True)
time.sleep(120)
"""


def test_the_workers_end_when_their_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)  # the parent alone: nothing is sent to its workers
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while left := [pid for pid in workers if alive(pid)]:
            assert time.monotonic() < deadline, f"workers {left} outlived their parent"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # whatever is left of the test's process group
        if parent.stdout is not None:
            parent.stdout.close()


def test_the_workers_outlive_the_thread_that_started_them() -> None:
    meter = RangeMeter(processes=2)
    starter = threading.Thread(target=meter.start)  # as a poller's worker thread that ends afterwards
    starter.start()
    starter.join()
    try:
        time.sleep(1.0)  # more than the workers' parent check
        assert meter._pool is not None
        assert all(alive(child.pid) for child in meter._pool._processes.values())
        assert meter._pool.submit(os.getppid).result(timeout=10) == os.getpid()
    finally:
        meter.close()
