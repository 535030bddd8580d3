"""A report as the JSON document of docs/design.md, as CSV (one row per group), or as a table for people.

Money is printed exactly (`format_usd`: as many decimals as the picodollars need, at least two).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from proxy.money import format_usd
from proxy.reports.query import Figures, Report

TOKEN_FIELDS = ("prompt", "cached", "candidates", "thoughts", "tool_use_prompt")
LINE_FIELDS = ("succeeded", "failed", "malformed")
FORMATS = ("table", "csv", "json")


def figures_document(figures: Figures) -> dict[str, Any]:
    """The figure fields of one row (or of the totals), in the document's order."""
    return {
        "jobs": figures.jobs,
        "cost_usd": format_usd(figures.cost_pico),
        "tokens": {name: getattr(figures, name) for name in TOKEN_FIELDS},
        "lines": {name: getattr(figures, name) for name in LINE_FIELDS},
        "unpriced_jobs": figures.unpriced_jobs,
        "unmeterable_jobs": figures.unmeterable_jobs,
    }


def to_document(report: Report) -> dict[str, Any]:
    """`{"rows": [{<one field per --by key>, figures...}], "totals": {figures...}}`."""
    rows = [{**dict(zip(report.by, row.key, strict=True)), **figures_document(row.figures)} for row in report.rows]
    return {"rows": rows, "totals": figures_document(report.totals)}


def to_json(report: Report) -> str:
    return json.dumps(to_document(report), indent=2) + "\n"


def csv_header(by: tuple[str, ...]) -> list[str]:
    return [*by, "jobs", "cost_usd", *(f"tokens_{n}" for n in TOKEN_FIELDS), *(f"lines_{n}" for n in LINE_FIELDS),
            "unpriced_jobs", "unmeterable_jobs"]


def _csv_values(figures: Figures) -> list[str | int]:
    return [figures.jobs, format_usd(figures.cost_pico), *(getattr(figures, n) for n in TOKEN_FIELDS),
            *(getattr(figures, n) for n in LINE_FIELDS), figures.unpriced_jobs, figures.unmeterable_jobs]


def to_csv(report: Report) -> str:
    """One header line, then one line per group (no totals line: sum the columns); an empty key is ``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_header(report.by))
    for row in report.rows:
        writer.writerow([*("" if v is None else v for v in row.key), *_csv_values(row.figures)])
    return out.getvalue()


_TABLE_FIGURES = ("JOBS", "COST_USD", "PROMPT", "CACHED", "CANDIDATES", "THOUGHTS", "TOOL_USE_PROMPT",
                  "LINES_OK", "LINES_FAILED", "LINES_MALFORMED", "UNPRICED", "UNMETERABLE")


def _cost_cell(figures: Figures) -> str:
    # A group whose jobs all lack a price has no cost figure at all: never print it as 0.00.
    if figures.priced_jobs == 0 and figures.jobs:
        return "n/a*"
    return format_usd(figures.cost_pico) + ("*" if figures.unpriced_jobs or figures.unmeterable_jobs else "")


def _table_values(figures: Figures) -> list[str]:
    return [str(figures.jobs), _cost_cell(figures), *(str(getattr(figures, n)) for n in TOKEN_FIELDS),
            *(str(getattr(figures, n)) for n in LINE_FIELDS), str(figures.unpriced_jobs),
            str(figures.unmeterable_jobs)]


def to_table(report: Report) -> str:
    """Aligned columns, a TOTAL line, and notes on unpriced, unmeterable and in-flight jobs."""
    header = [k.upper() for k in report.by] + list(_TABLE_FIGURES)
    lines = [["" if v is None else v for v in row.key] + _table_values(row.figures) for row in report.rows]
    total_key = ["TOTAL"] + [""] * (len(report.by) - 1) if report.by else []
    lines.append(total_key + _table_values(report.totals))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    keys = len(report.by)

    def format_line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < keys else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    text = [format_line(header), rule, *(format_line(line) for line in lines[:-1]), rule, format_line(lines[-1])]
    text += [""] + _notes(report)
    return "\n".join(text).rstrip() + "\n"


def _range_text(report: Report) -> str:
    since, until = report.filter.since, report.filter.until
    start = since.strftime("%Y-%m-%d %H:%M:%S") if since else "the first job"
    end = until.strftime("%Y-%m-%d %H:%M:%S") if until else "now"
    return f"Jobs created in [{start}, {end}) UTC; cost in USD, priced jobs only."


def _notes(report: Report) -> list[str]:
    notes = [_range_text(report)]
    totals = report.totals
    if totals.unpriced_jobs:
        notes.append(f"* {totals.unpriced_jobs} unpriced job(s): no price for their model; their tokens are counted, "
                     "their cost is not (add the price, then run `vbp reprice`).")
    if totals.unmeterable_jobs:
        notes.append(f"* {totals.unmeterable_jobs} unmeterable job(s) (e.g. BigQuery output): no cost figure.")
    if report.in_flight:
        notes.append(f"{report.in_flight} job(s) in flight (not metered yet) are not included.")
    return notes


def render(report: Report, fmt: str) -> str:
    """The report in `fmt`: table, csv or json."""
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "table":
        return to_table(report)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
