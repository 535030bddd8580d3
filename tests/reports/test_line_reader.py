"""The per-line reader's fast path (the compiled scanner's per-row mode) held to the provider's parser, line for line.

The reference here is computed apart, line by line: the lines as metering splits them, each one's usage by
`usage.parse_row`, its key by the key reader, its cost by `cost.price_row`. The reader must give exactly that,
with the compiled scanner (`native=True`) and without it, whatever the chunk boundaries; and the export by byte
range in worker processes must write the very bytes of the one-process export.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import xxhash
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.emulator.storage import FakeGcsServer
from proxy.ledger.models import Job
from proxy.metering._rowscan import scan_rows
from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable
from proxy.metering.ranges import RangeMeter
from proxy.providers.base import OutputObject
from proxy.providers.vertex.usage import parse_row
from proxy.reports.line_costs import LineSource, export, export_blocks, line_costs, split_lines
from proxy.reports.line_keys import KeyReader, custom_id_key, request_key
from proxy.reports.line_reader import ROW_FIELDS, LineFigures, LineReader
from tests.metering.fuzz_rowscan import mutate
from tests.metering.test_rowscan import SEEDS
from tests.support.samples import SAMPLES

RATES = PricingTable.load(Path(__file__).resolve().parents[2] / "pricing").rates_for(
    "vertex", "gemini-2.5-flash", datetime(2026, 6, 1, tzinfo=UTC))
assert RATES is not None
PREDICTIONS = (SAMPLES / "vertex-predictions.jsonl").read_bytes()
# Every kind of line the fast path claims or refuses: the samples, the scanner's own test rows, blank lines, CRLF.
MIXED = PREDICTIONS + b"\n" + b"\n".join(SEEDS) + b"\n  \n\r\n" + b"\r\n".join(SEEDS[:5]) + b"\n" + SEEDS[0]


def reference(data: bytes, keys: KeyReader = request_key) -> list[LineFigures]:
    """Each line's figures computed apart, one line at a time."""
    return [(keys(line), usage, price_row(usage, RATES)) for line in split_lines([data])
            for usage in [parse_row(line)]]


def read(data: bytes, cuts: list[int], *, native: bool, keys: KeyReader = request_key) -> list[LineFigures]:
    """The reader's figures for `data` fed in chunks cut at `cuts`."""
    reader = LineReader("vertex", keys, RATES, native=native)
    bounds = [0, *sorted(set(cuts)), len(data)]
    out: list[LineFigures] = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        out += reader.feed(data[start:stop])
    return out + reader.close()


def test_the_sample_rows_are_claimed_with_their_request_spans() -> None:
    lines = PREDICTIONS.splitlines(keepends=True)
    data = b"".join(lines[:3])
    pos, records = scan_rows(data, 0, 100)
    fields = memoryview(records).cast("q").tolist()
    assert pos == len(data) and len(fields) == 3 * ROW_FIELDS
    at = 0
    for index, line in enumerate(lines[:3]):
        start, end, request, request_end, instance = fields[index * ROW_FIELDS:index * ROW_FIELDS + 5]
        echoed = msgspec.json.decode(line, type=dict[str, msgspec.Raw])["request"]
        assert (start, end) == (at, at + len(line.rstrip(b"\r\n"))) and instance == -1
        assert data[request:request_end] == bytes(echoed)
        at += len(line)


def test_a_repeated_request_is_left_to_python_and_the_limit_is_kept() -> None:
    line = PREDICTIONS.splitlines()[0]
    twice = line[:1] + b'"request":{"a":1},' + line[1:] + b"\n"
    assert scan_rows(twice, 0, 10) == (0, b"")
    data = (line + b"\n") * 5
    pos, records = scan_rows(data, 0, 2)
    assert pos == 2 * (len(line) + 1) and len(records) == 2 * ROW_FIELDS * 8
    with pytest.raises(ValueError):
        scan_rows(data, 0, 0)
    with pytest.raises(TypeError):
        scan_rows(bytearray(data), 0, 1)  # type: ignore[arg-type]


def test_fast_and_fallback_paths_give_the_reference_figures() -> None:
    expected = reference(MIXED)
    assert len(expected) == 143  # 3 samples, the seeds (one is empty), 5 CRLF lines, one without a newline
    assert read(MIXED, [], native=True) == expected == read(MIXED, [], native=False)
    keyed = reference(MIXED, custom_id_key)
    assert read(MIXED, [], native=True, keys=custom_id_key) == keyed
    echoed = msgspec.json.decode(PREDICTIONS.splitlines()[0], type=dict[str, msgspec.Raw])["request"]
    assert expected[0][0] == "req_" + xxhash.xxh3_128_hexdigest(bytes(echoed))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(MIXED)), max_size=12), st.booleans())
def test_random_splits_give_the_same_figures(cuts: list[int], native: bool) -> None:
    assert read(MIXED, cuts, native=native) == reference(MIXED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_mutated_lines_read_as_the_parser_reads_them(seed: int, count: int) -> None:
    rng = random.Random(seed)
    data = b"\n".join(mutate(rng, rng.choice(SEEDS)) for _ in range(count)) + rng.choice([b"", b"\n", b"\r\n"])
    assert read(data, [rng.randrange(len(data) + 1)], native=True) == reference(data)


@pytest.mark.slow  # fake-gcs-server and worker processes
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_export_by_byte_range_writes_the_bytes_of_the_one_process_export(fake_gcs: FakeGcsServer,
                                                                               fmt: str) -> None:
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"ranges-{uuid.uuid4().hex[:12]}")
    objects = []
    for name, data in {"predictions_0001.jsonl": MIXED * 40, "predictions_0002.jsonl": PREDICTIONS * 60}.items():
        blob = bucket.blob(name)
        blob.upload_from_string(data)
        blob.reload()
        objects.append(OutputObject(bucket.name, name, int(blob.generation or 0), int(blob.size or 0)))
    ranges = RangeMeter(processes=2, min_bytes=64 * 1024)  # dozens of ranges, cut inside lines
    assert sum(obj.size for obj in objects) > 16 * ranges.min_bytes  # so the export does go by range
    for job in (Job(name="j", provider="vertex"), Job(name="j", provider="vertex", batch_id="batch_1")):
        source = LineSource(job=job, objects=objects, rates=RATES)
        try:
            parallel = b"".join(export(client, source, fmt, ranges=ranges))
        finally:
            ranges.close()
        assert parallel == b"".join(export_blocks(fmt, line_costs(client, source, native=False)))
        if fmt == "jsonl":
            numbers = [json.loads(record)["line"] for record in parallel.splitlines()]
            assert numbers == list(range(1, len(list(split_lines([MIXED * 40]))) + 3 * 60 + 1))
