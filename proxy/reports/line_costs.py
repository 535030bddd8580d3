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
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgspec
from google.cloud import storage
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from proxy.errors import FailedPrecondition, NotFound
from proxy.ledger.models import Job, JobMetering
from proxy.metering.cost import price_row
from proxy.metering.objects import iter_chunks
from proxy.metering.pricing import PricingTable, Rates
from proxy.money import format_usd
from proxy.providers.base import OutputObject, RowUsage
from proxy.providers.registry import get_provider
from proxy.reports.line_keys import KeyReader, key_reader
from proxy.reports.render import TOKEN_FIELDS
from proxy.tenancy.keys import Principal

FORMATS = ("jsonl", "csv")
CSV_HEADER = ("line", "key", "status", *(f"tokens_{name}" for name in TOKEN_FIELDS), "cost_usd")
_BLOCK_BYTES = 256 * 1024  # records are handed out in blocks of about this size
_BLANK = b" \t\r\f\v"


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


def line_costs(client: storage.Client, source: LineSource, *, keys: KeyReader | None = None) -> Iterator[LineCost]:
    """Every line of the job's output files, in order, with its usage and exact cost."""
    provider = get_provider(source.job.provider)
    keys = keys or key_reader(source.job)
    rates = source.rates
    number = 0
    for obj in source.objects:
        for raw in split_lines(iter_chunks(client, obj)):
            number += 1
            usage = provider.row_usage(raw)
            yield LineCost(number, keys(raw), usage, None if rates is None else price_row(usage, rates))


def jsonl_blocks(lines: Iterable[LineCost]) -> Iterator[bytes]:
    """One JSON object per line, in blocks of about `_BLOCK_BYTES`."""
    encode = msgspec.json.encode
    return _blocks(encode(line.document()) + b"\n" for line in lines)


def csv_blocks(lines: Iterable[LineCost]) -> Iterator[bytes]:
    """A header, then one CSV row per line (`cost_usd` empty when unpriced), in blocks."""
    def rows() -> Iterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        for line in lines:
            writer.writerow((line.line, line.key or "", line.usage.kind, *line.tokens().values(),
                             "" if line.cost_pico is None else format_usd(line.cost_pico)))
            if out.tell() >= _BLOCK_BYTES:
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
        yield out.getvalue().encode()
    return _blocks(rows())


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
