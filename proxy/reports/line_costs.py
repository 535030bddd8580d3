"""Per-line costs: one record per output line of a metered job, streamed from its output files.

A record is `{"line", "key", "status", "tokens", "cost_usd"}`: `line` is the line's 1-based position among the
non-blank lines of the job's output files taken in name order (as metering numbers them), `key` its
`line_keys` key, `status` the kind metering counted it as (succeeded, failed, no_usage, malformed), `tokens` the
report document's object, `cost_usd` exact (None when the job is unpriced).

The files read are exactly those the job's current figure was metered from (pinned to their generations), each
row's usage comes from the job's provider (`BatchProvider.row_usage`, the seam), and its cost from metering's own
`cost.price_row` with the rates of the pricing row the figure used.

Why the lines add up to the job's figure to the last unit: every rate is a whole number of picodollars per token
(`proxy.money`), so a row's cost is an exact integer of pUSD and nothing is ever rounded; the job's figure is the
same rows' billed units summed per tier and priced once (`cost.row_units`, `JobTotals.cost_pico`), and pricing is
linear in the units, so the sum of the rows' `price_row` is that very integer. `format_usd` prints each integer as
an exact decimal, so the lines' `cost_usd` strings add up (as decimals) to the job's `cost_usd`.

Memory stays flat: the bytes arrive in chunks (`objects.iter_chunks`), only an unfinished line is carried over.
Speed: `export` writes the records with `line_records.TailReader` (the compiled row scanner's per-row mode reads the
common rows and `_rowscan.row_tails` writes their records; `line_costs` + `export_blocks` are the reference, line
by line), and spreads large outputs over worker processes by byte range, as metering does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import chain

from google.cloud import storage
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from proxy.errors import FailedPrecondition, NotFound
from proxy.ledger.models import Job, JobMetering
from proxy.metering.objects import DEFAULT_CHUNK_BYTES, iter_chunks, read_ahead
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.ranges import (
    ByteRange,
    RangeMeter,
    authorization,
    planned_ranges,
    range_chunks,
    results_in_order,
)
from proxy.money import format_usd
from proxy.providers.base import OutputObject, RowUsage
from proxy.reports.line_keys import KeyReader, custom_id_key, key_reader, request_key
from proxy.reports.line_reader import LineReader
from proxy.reports.line_records import FORMATS, TailReader, csv_tail, jsonl_tail
from proxy.reports.render import TOKEN_FIELDS
from proxy.tenancy.keys import Principal

CSV_HEADER = ("line", "key", "status", *(f"tokens_{name}" for name in TOKEN_FIELDS), "cost_usd")
_BLOCK_BYTES = 256 * 1024  # records are handed out in blocks of about this size
_BLANK = b" \t\r\f\v"
_MAX_RANGE_BYTES = 64 * 1024 * 1024  # a range's records are held whole (a few MB) until their turn
_AHEAD_PER_PROCESS = 2  # ranges in flight per worker process
_RECORDS_PER_BLOCK = 2048  # a range's records are numbered and handed out this many at a time (about 256 KB)


@dataclass(frozen=True)
class LineCost:
    """One output line's figures (`cost_pico` None: the job is unpriced)."""

    line: int
    key: str | None
    usage: RowUsage
    cost_pico: int | None

    def tokens(self) -> dict[str, int]:
        """The report document's `tokens` object for this line (as `JobTotals.add` counts a row)."""
        usage = self.usage
        counts = (usage.input, usage.cached_input, usage.output, usage.reasoning, usage.tool_use_input)
        return dict(zip(TOKEN_FIELDS, counts, strict=True))

    def document(self) -> dict[str, object]:
        return {"line": self.line, "key": self.key, "status": self.usage.kind, "tokens": self.tokens(),
                "cost_usd": None if self.cost_pico is None else format_usd(self.cost_pico)}


@dataclass(frozen=True)
class LineSource:
    """A metered job and what reading its lines again takes: the metered objects and the figure's rates."""

    job: Job
    objects: list[OutputObject]
    rates: Rates | None


def find_job(session: Session, *, ref: str, principal: Principal) -> Job:
    """The job named by its native name or (OpenAI door) batch id; another team's job is as missing as none."""
    batch_id = getattr(Job, "batch_id", None)
    match = Job.name == ref if batch_id is None else or_(Job.name == ref, batch_id == ref)
    job = session.scalars(select(Job).where(match)).first()
    if job is None or (not principal.admin and job.team != principal.team):
        raise NotFound(f"Job {ref} not found.")
    return job


def line_source(session: Session, *, job: Job, pricing: PricingTable) -> LineSource:
    """What the job's current figure was metered from; FailedPrecondition when it has no per-line figures."""
    if job.metering_state not in ("metered", "unmeterable") or job.cost_status is None:
        raise FailedPrecondition(f"Job {job.name} is not metered yet: its lines have no figures.")
    if job.cost_status == "unmeterable":
        raise FailedPrecondition(f"Job {job.name} is unmeterable: its outputs cannot be read.")
    metering = session.scalars(select(JobMetering).where(JobMetering.job_pk == job.id,
                                                         JobMetering.superseded_at.is_(None))
                               .order_by(JobMetering.id.desc())).first()
    if metering is None:
        raise FailedPrecondition(f"Job {job.name} has no metering record.")
    objects = sorted(OutputObject(*_bucket_and_name(o["uri"]), int(o["generation"]), int(o["size"]))
                     for o in metering.objects)
    rates = None
    if job.cost_status == "priced" and objects:
        rates = pricing.rates_for(job.provider, job.model_id or job.model, job.create_time)
        used = [f"{row['model']}@{row['effective_from']}" for row in metering.pricing_rows]
        if rates is None or used != [rates.key]:
            raise FailedPrecondition(
                f"Job {job.name} was priced with {', '.join(used) or 'no pricing row'}, which the pricing table no "
                f"longer gives it: run `vbp reprice --job {job.name}` first.")
    return LineSource(job=job, objects=objects, rates=rates)


def _bucket_and_name(uri: str) -> tuple[str, str]:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The non-blank lines of a stream of chunks, without their newline (or a CR before it), as metering reads them."""
    pending = b""
    for chunk in chunks:
        if pending:
            chunk = pending + chunk
        lines = chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line and (line[0] not in _BLANK or line.strip()):
                yield line[:-1] if line.endswith(b"\r") else line
    if pending and (pending[0] not in _BLANK or pending.strip()):
        yield pending[:-1] if pending.endswith(b"\r") else pending


def line_costs(client: storage.Client, source: LineSource, *, keys: KeyReader | None = None,
               native: bool = True) -> Iterator[LineCost]:
    """Every line of the job's output files, in order, with its usage and exact cost (`native=False`: every line
    through the provider's parser, the reference of the compiled fast path)."""
    number = 0
    for obj in source.objects:
        reader = LineReader(source.job.provider, keys or key_reader(source.job), source.rates, native=native)
        for chunk in iter_chunks(client, obj):
            for key, usage, cost in reader.feed(chunk):
                number += 1
                yield LineCost(number, key, usage, cost)
        for key, usage, cost in reader.close():
            number += 1
            yield LineCost(number, key, usage, cost)


_NUMBERS = {"jsonl": b'{"line":%d', "csv": b"%d"}


def jsonl_blocks(lines: Iterable[LineCost]) -> Iterator[bytes]:
    """One JSON object per line, in blocks of about `_BLOCK_BYTES`."""
    return _blocks(b'{"line":%d' % line.line + jsonl_tail(line.key, line.usage, line.cost_pico) for line in lines)


def csv_blocks(lines: Iterable[LineCost]) -> Iterator[bytes]:
    """A header, then one CSV row per line (`cost_usd` empty when unpriced), in blocks."""
    header = (",".join(CSV_HEADER) + "\r\n").encode()
    return _blocks(chain([header], (b"%d" % line.line + csv_tail(line.key, line.usage, line.cost_pico)
                                    for line in lines)))


def _blocks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    block: list[bytes] = []
    size = 0
    for piece in pieces:
        block.append(piece)
        size += len(piece)
        if size >= _BLOCK_BYTES:
            yield b"".join(block)
            block.clear()
            size = 0
    if block:
        yield b"".join(block)


def export_blocks(fmt: str, lines: Iterable[LineCost]) -> Iterator[bytes]:
    """The records in `fmt` (jsonl or csv)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not jsonl or csv")
    return jsonl_blocks(lines) if fmt == "jsonl" else csv_blocks(lines)


@dataclass(frozen=True)
class TailTask:
    """What a worker needs to write the record tails of one byte range's lines: plain, picklable data."""

    byte_range: ByteRange
    url: str
    headers: dict[str, str]
    rates: Rates | None
    provider: str
    batch: bool  # an OpenAI-door job (keys are custom ids)
    fmt: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES


def range_tails(task: TailTask) -> list[bytes]:
    """In a worker process: the record tails (`jsonl_tail` / `csv_tail`) of the lines that start in the range."""
    reader = TailReader(task.provider, custom_id_key if task.batch else request_key, task.rates, task.fmt)
    tails: list[bytes] = []
    # Read ahead by a thread: the download goes on while the rows are read (the scan and the hashing let go of the
    # GIL); a plain read would wait for each chunk.
    for chunk in read_ahead(range_chunks(task.byte_range, task.url, task.headers, task.chunk_bytes),
                            where=f"{task.byte_range.obj.uri}#{task.byte_range.obj.generation}"):
        tails += reader.feed(chunk)
    return tails + reader.close()


def _object_tails(client: storage.Client, source: LineSource, fmt: str, keys: KeyReader) -> Iterator[list[bytes]]:
    """In this process: the record tails of the job's lines, object after object, a chunk's lines at a time."""
    for obj in source.objects:
        reader = TailReader(source.job.provider, keys, source.rates, fmt)
        for chunk in iter_chunks(client, obj):
            yield reader.feed(chunk)
        yield reader.close()


def _numbered(fmt: str, tail_lists: Iterable[list[bytes]]) -> Iterator[bytes]:
    """The records: the tails, in order, each after its line number (the CSV header first), in blocks."""
    number = 0
    prefix = _NUMBERS[fmt]
    if fmt == "csv":
        yield (",".join(CSV_HEADER) + "\r\n").encode()
    for tails in tail_lists:
        for at in range(0, len(tails), _RECORDS_PER_BLOCK):
            part = tails[at:at + _RECORDS_PER_BLOCK]
            records: list[bytes] = [b""] * (2 * len(part))
            records[0::2] = [prefix % n for n in range(number + 1, number + len(part) + 1)]
            records[1::2] = part
            number += len(part)
            yield b"".join(records)


def export(client: storage.Client, source: LineSource, fmt: str, *, ranges: RangeMeter | None = None,
           keys: KeyReader | None = None) -> Iterator[bytes]:
    """The job's records in `fmt`, read by byte range in the worker processes of `ranges` when the output is large
    enough, else here (the same bytes as `export_blocks(fmt, line_costs(client, source, keys=keys))`, the
    reference, either way: the records are written by `line_records.TailReader`). `keys`: the job's key reader
    when not the default one (`line_keys.job_key_reader`).

    Each range's worker returns its lines' tails; the ranges are taken in order and this process numbers their
    lines, so line numbers run on across ranges and objects exactly as one reader would count them. At most
    `_AHEAD_PER_PROCESS` ranges per process are in flight, so memory stays flat whatever the output's size.
    """
    objects = source.objects
    pool = None
    # Workers key lines by the request's hash or the echoed custom_id; a door batch's reader holds its line index
    # (read from Cloud Storage once, here), so its lines are read in this process.
    plain_keys = keys is None or keys is request_key
    if ranges is not None and plain_keys and all("gzip" not in obj.encoding for obj in objects) \
            and sum(obj.size for obj in objects) >= 2 * ranges.min_bytes:
        pool = ranges.executor()
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not jsonl or csv")
    if pool is None:
        yield from _numbered(fmt, _object_tails(client, source, fmt, keys or key_reader(source.job)))
        return
    assert ranges is not None
    planned, urls = planned_ranges(client, objects, ranges, max_range_bytes=_MAX_RANGE_BYTES)
    batch = bool(getattr(source.job, "batch_id", None))

    def submit(byte_range: ByteRange) -> Future[list[bytes]]:
        url = urls[byte_range.obj]
        task = TailTask(byte_range, url, authorization(client, url), source.rates, source.job.provider, batch, fmt)
        return pool.submit(range_tails, task)

    yield from _numbered(fmt, results_in_order(ranges, planned, submit, ahead_per_process=_AHEAD_PER_PROCESS,
                                               what="a per-line export"))
