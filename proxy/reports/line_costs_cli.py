"""`vbp report lines --job NAME`: a metered job's cost per output line, as JSON lines or CSV, streamed to stdout."""

from __future__ import annotations

import sys

import click


@click.command("lines")
@click.option("--job", "ref", required=True, help="The job's name (projects/.../batchPredictionJobs/ID) or batch id.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
def report_lines(ref: str, fmt: str) -> None:
    """One record per output line of a metered job: line, key, status, tokens and exact cost_usd (they sum to the
    job's cost). Read from the job's output files as metered."""
    from proxy.cli import _ledger, _sessions  # imported here: proxy.cli registers this command
    from proxy.errors import ApiError
    from proxy.metering.job_meter import storage_client
    from proxy.metering.pricing import PricingTable
    from proxy.reports.line_costs import export, find_job, line_source
    from proxy.reports.line_keys import job_key_reader
    from proxy.services import range_meter
    from proxy.tenancy.keys import Principal

    settings = _ledger()
    operator = Principal(key_id="cli", team="", admin=True)  # the CLI runs with the ledger's own access
    try:
        with _sessions(settings)() as session:
            job = find_job(session, ref=ref, principal=operator)
            source = line_source(session, job=job, pricing=PricingTable.load(settings.pricing_path))
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    client = storage_client()
    keys = job_key_reader(source.job, client=client, files_bucket=settings.files_bucket)
    out = sys.stdout.buffer
    ranges = range_meter(settings)  # large outputs are read by byte range in worker processes, as metering does
    try:
        for block in export(client, source, fmt, ranges=ranges, keys=keys):
            out.write(block)
    finally:
        ranges.close()
        client.close()
    out.flush()
