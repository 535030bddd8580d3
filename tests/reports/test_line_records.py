"""The per-line export's compiled record writer (`_rowscan.row_tails` via `line_records.TailReader`) held to the
reference formatters byte for byte.

The reference is computed apart, line by line: the lines as metering splits them, each one's usage by
`usage.parse_row`, its key by `line_keys.request_key`, its cost by `cost.price_row`, its bytes by `jsonl_tail` /
`csv_tail`. The compiled writer must give exactly those bytes for every shipped pricing row (tiers, audio and
cached rates, embedding tables it must leave to Python), for token counts up to the scanner's 15 digits (costs past
64 bits included, which it hands back to Python), unpriced jobs, both formats, and whatever the chunk boundaries.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.emulator.storage import FakeGcsServer
from proxy.ledger.models import Job
from proxy.metering._rowscan import row_tails, scan_rows
from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable, Rates
from proxy.providers.base import OutputObject
from proxy.providers.vertex.usage import parse_row
from proxy.reports.line_costs import LineSource, export, export_blocks, line_costs, split_lines
from proxy.reports.line_keys import KeyReader, custom_id_key, request_key
from proxy.reports.line_records import FORMATS, TAILS, TEMPLATES, TailReader, rate_spec
from tests.metering.fuzz_rowscan import mutate
from tests.metering.test_rowscan import SEEDS
from tests.reports.test_line_reader import MIXED

TABLE = PricingTable.load(Path(__file__).resolve().parents[2] / "pricing")
EVERY_ROW = [rates for rows in TABLE.models.values() for rates in rows]
FLASH = TABLE.rates_for("vertex", "gemini-2.5-flash", datetime(2026, 6, 1, tzinfo=UTC))
PRO = TABLE.rates_for("vertex", "gemini-2.5-pro", datetime(2026, 6, 1, tzinfo=UTC))
assert FLASH is not None and PRO is not None and PRO.long_context is not None
COUNT = st.one_of(st.integers(0, 300_000), st.integers(0, 10**15 - 1))  # the scanner reads up to 15 digits


def reference(data: bytes, rates: Rates | None, fmt: str, keys: KeyReader = request_key) -> list[bytes]:
    """Each line's record tail computed apart, one line at a time."""
    tail = TAILS[fmt]
    return [tail(keys(line), usage, None if rates is None else price_row(usage, rates))
            for line in split_lines([data]) for usage in [parse_row(line)]]


def written(data: bytes, rates: Rates | None, fmt: str, cuts: list[int] = [], *,  # noqa: B006 (never mutated)
            keys: KeyReader = request_key) -> list[bytes]:
    """The reader's tails for `data` fed in chunks cut at `cuts`."""
    reader = TailReader("vertex", keys, rates, fmt)
    bounds = [0, *sorted(set(cuts)), len(data)]
    out: list[bytes] = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        out += reader.feed(data[start:stop])
    return out + reader.close()


def gemini_row(counts: dict[str, int], audio: tuple[int, int], echo: str | None, failed: bool) -> bytes:
    """A row the scanner claims: a succeeded Gemini row with these counts, or a failed row; echoing its request,
    an embedding instance or nothing."""
    row: dict[str, Any] = {"status": "Bad Request" if failed else ""}
    if echo is not None:
        row[echo] = {"contents": [{"role": "user", "parts": [{"text": f"say {sum(counts.values())}"}]}]}
    if not failed:
        usage: dict[str, Any] = dict(counts)
        if audio[0]:
            usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": 3}, {"modality": "AUDIO",
                                                                                   "tokenCount": audio[0]}]
        if audio[1]:
            usage["cacheTokensDetails"] = [{"modality": "AUDIO", "tokenCount": audio[1]}]
        row["response"] = {"modelVersion": "gemini-2.5-flash", "usageMetadata": usage}
    return json.dumps(row, separators=(",", ":")).encode()


def test_the_templates_are_cut_from_the_reference_formats() -> None:
    pieces, quote, absent, prefix, statuses = TEMPLATES["jsonl"]
    assert pieces == (b',"key":', b',"status":"', b'","tokens":{"prompt":', b',"cached":', b',"candidates":',
                      b',"thoughts":', b',"tool_use_prompt":', b'},"cost_usd":', b"}\n")
    assert (quote, absent, prefix, statuses) == (b'"', b"null", b"req_", (b"succeeded", b"failed"))
    assert TEMPLATES["csv"] == ((b",", b",", b",", b",", b",", b",", b",", b",", b"\r\n"), b"", b"", b"req_",
                                (b"succeeded", b"failed"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_fixtures_give_the_reference_bytes_at_every_shipped_pricing_row(fmt: str) -> None:
    assert len(EVERY_ROW) >= 23  # every model file's rows
    for rates in [*EVERY_ROW, None]:
        reader = TailReader("vertex", request_key, rates, fmt)
        # generative rows are written in C; an embedding table's rules are Python's alone
        assert reader.compiled == (rates is None or rates.kind == "generative"), rates
        assert written(MIXED, rates, fmt) == reference(MIXED, rates, fmt), rates and rates.key


def test_the_sample_records_read_as_json_with_the_reference_figures() -> None:
    tails = written(MIXED, PRO, "jsonl")
    assert len(tails) == 143
    first = json.loads(b'{"line":1' + tails[0])
    assert first["key"].startswith("req_") and len(first["key"]) == 36 and first["status"] == "succeeded"
    assert tails == reference(MIXED, PRO, "jsonl")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={name: COUNT for name in (
           "promptTokenCount", "cachedContentTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
           "toolUsePromptTokenCount")}),
       st.tuples(COUNT, COUNT), st.sampled_from(["request", "instance", None]), st.booleans(),
       st.sampled_from([*EVERY_ROW, None]), st.sampled_from(FORMATS))
def test_any_token_counts_give_the_reference_bytes(counts: dict[str, int], audio: tuple[int, int], echo: str | None,
                                                   failed: bool, rates: Rates | None, fmt: str) -> None:
    line = gemini_row(counts, audio, echo, failed)
    pos, records = scan_rows(line + b"\n", 0, 1)
    assert pos == len(line) + 1 and records  # the scanner claims it: the compiled writer writes it
    assert written(line + b"\n", rates, fmt) == reference(line, rates, fmt)


def test_a_cost_past_64_bits_is_left_to_python_and_written_exactly() -> None:
    counts = {"promptTokenCount": 10**15 - 1, "candidatesTokenCount": 10**15 - 1, "thoughtsTokenCount": 10**15 - 1}
    line = gemini_row(counts, (0, 0), "request", False) + b"\n"
    assert price_row(parse_row(line), PRO) > 2**64  # so the compiled writer cannot hold it
    _, records = scan_rows(line, 0, 1)
    assert row_tails(records, [b"\0" * 32], TEMPLATES["jsonl"], rate_spec(PRO)) == [None]
    (tail,) = written(line, PRO, "jsonl")
    assert tail == reference(line, PRO, "jsonl")[0]
    # the long-context batch tier: (10**15 - 1) x (1.25 input + 2 x 7.50 output) USD per 1M tokens
    assert json.loads(b'{"line":1' + tail)["cost_usd"] == "16249999999.99998375"


def test_a_cost_that_just_fits_is_written_in_c() -> None:
    # 2**64 - 1 pUSD is 18446744.073709551615 USD: the largest cost the compiled writer prints
    rates = (2**64 - 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    line = gemini_row({"promptTokenCount": 10**15 - 1}, (0, 0), "request", False) + b"\n"
    _, records = scan_rows(line, 0, 1)
    (tail,) = row_tails(records, [bytes(range(32))], TEMPLATES["csv"], rates)
    assert tail == b",req_000102030405060708090a0b0c0d0e0f,succeeded,999999999999999,0,0,0,0,999.999999999999\r\n"
    (tail,) = row_tails(records, [None], TEMPLATES["jsonl"], (2**64 - 1, 18446, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    assert tail.endswith(b'"key":null,"status":"succeeded","tokens":{"prompt":999999999999999,"cached":0,'
                         b'"candidates":0,"thoughts":0,"tool_use_prompt":0},"cost_usd":"18445999.999999981554"}\n')


def test_row_tails_refuses_what_it_cannot_write() -> None:
    line = gemini_row({"promptTokenCount": 5}, (0, 0), "request", False) + b"\n"
    _, records = scan_rows(line, 0, 1)
    with pytest.raises(ValueError, match="records and digests do not match"):
        row_tails(records, [], TEMPLATES["jsonl"], None)
    with pytest.raises(ValueError, match="records and digests do not match"):
        row_tails(records[:-1], [None], TEMPLATES["jsonl"], None)
    with pytest.raises(TypeError, match="a digest is None or bytes of at least 16"):
        row_tails(records, [b"short"], TEMPLATES["jsonl"], None)
    with pytest.raises(ValueError, match="the template needs 9 pieces and 2 statuses"):
        row_tails(records, [None], (TEMPLATES["jsonl"][0][:8], *TEMPLATES["jsonl"][1:]), None)
    with pytest.raises(ValueError, match="rates are None or a tuple of 11 ints"):
        row_tails(records, [None], TEMPLATES["jsonl"], (1, 2))
    with pytest.raises(OverflowError):
        row_tails(records, [None], TEMPLATES["jsonl"], (2**64, *[0] * 10))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(MIXED)), max_size=12), st.sampled_from(FORMATS), st.booleans())
def test_random_splits_give_the_reference_bytes(cuts: list[int], fmt: str, door: bool) -> None:
    keys = custom_id_key if door else request_key  # a door batch's keys: every row's record by the reference
    assert written(MIXED, FLASH, fmt, cuts, keys=keys) == reference(MIXED, FLASH, fmt, keys)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 6), st.sampled_from(FORMATS))
def test_mutated_lines_give_the_reference_bytes(seed: int, count: int, fmt: str) -> None:
    rng = random.Random(seed)
    data = b"\n".join(mutate(rng, rng.choice(SEEDS)) for _ in range(count)) + rng.choice([b"", b"\n", b"\r\n"])
    rates = rng.choice([*EVERY_ROW, None])
    assert written(data, rates, fmt, [rng.randrange(len(data) + 1)]) == reference(data, rates, fmt)


@pytest.mark.slow  # fake-gcs-server
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_export_in_one_process_writes_the_reference_bytes(fake_gcs: FakeGcsServer, fmt: str) -> None:
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"records-{uuid.uuid4().hex[:12]}")
    objects = []
    for name, data in {"predictions_0001.jsonl": MIXED * 3, "predictions_0002.jsonl": MIXED[:5000]}.items():
        blob = bucket.blob(name)
        blob.upload_from_string(data)
        blob.reload()
        objects.append(OutputObject(bucket.name, name, int(blob.generation or 0), int(blob.size or 0)))
    for job in (Job(name="j", provider="vertex"), Job(name="j", provider="vertex", batch_id="batch_1")):
        for rates in (PRO, None):
            source = LineSource(job=job, objects=objects, rates=rates)
            exported = b"".join(export(client, source, fmt))  # no worker processes: read here
            assert exported == b"".join(export_blocks(fmt, line_costs(client, source, native=False)))
            if fmt == "jsonl":  # one record a line (a CSV key may hold a quoted newline)
                assert len(exported.splitlines()) == sum(len(list(split_lines([obj]))) for obj in (MIXED * 3,
                                                                                                   MIXED[:5000]))
