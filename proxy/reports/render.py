"""A report as the JSON document of docs/design.md, as CSV (one row per group), or as a table for people.

Money is printed exactly (`format_usd`: as many decimals as the picodollars need, at least two). The JSON document
also carries `in_flight_jobs`, the jobs in range left out because they have no figure yet (the table says it in a
note; CSV has no place for it: `/v1/costs` sends it as the `X-VBP-In-Flight-Jobs` header).

The table fits a width (the terminal's): the group keys are always shown whole, JOBS and COST_USD always, and
the other figure columns from the most to the least asked for while they fit; a note names those left out.
`columns` picks the figure columns instead.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from proxy.budgets.store import BudgetStatus
from proxy.clock import utcnow
from proxy.money import format_usd
from proxy.reports import budget_lines
from proxy.reports.query import Figures, JobLine, Report, ReportDetails, ReportError

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


def to_document(report: Report, budgets: list[BudgetStatus] | None = None) -> dict[str, Any]:
    """`{"rows": [{<one field per --by key>, figures...}], "totals": {figures...}, "in_flight_jobs": N}`, and
    `"budgets": [...]` (as `vbp budgets list --json`) when budget lines are given."""
    rows = [{**dict(zip(report.by, row.key, strict=True)), **figures_document(row.figures)} for row in report.rows]
    document = {"rows": rows, "totals": figures_document(report.totals), "in_flight_jobs": report.in_flight}
    if budgets is not None:
        document["budgets"] = [status.to_json() for status in budgets]
    return document


def to_json(report: Report, budgets: list[BudgetStatus] | None = None) -> str:
    return json.dumps(to_document(report, budgets), indent=2) + "\n"


def csv_header(by: tuple[str, ...]) -> list[str]:
    return [*by, "jobs", "cost_usd", *(f"tokens_{n}" for n in TOKEN_FIELDS), *(f"lines_{n}" for n in LINE_FIELDS),
            "unpriced_jobs", "unmeterable_jobs"]


def _csv_values(figures: Figures) -> list[str | int]:
    return [figures.jobs, format_usd(figures.cost_pico), *(getattr(figures, n) for n in TOKEN_FIELDS),
            *(getattr(figures, n) for n in LINE_FIELDS), figures.unpriced_jobs, figures.unmeterable_jobs]


def to_csv(report: Report, budgets: list[BudgetStatus] | None = None) -> str:
    """One header line, then one line per group (no totals line: sum the columns); an empty key is ``.

    With budget lines (`--by team`): five more columns (empty for a team without a budget), and a line of zero
    figures for each team with a budget but no metered job in the range."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    by_team = {status.budget.team: budget_lines.cells(status) for status in budgets or []}
    extra = budget_lines.CSV_FIELDS if budgets is not None else ()
    writer.writerow([*csv_header(report.by), *extra])
    shown = set()
    for row in report.rows:
        team = row.key[0] if extra else None
        shown.add(team)
        writer.writerow([*("" if v is None else v for v in row.key), *_csv_values(row.figures),
                         *(by_team.get(str(team), ("",) * len(extra)) if extra else ())])
    for team, figures in by_team.items():
        if team not in shown:
            writer.writerow([team, *_csv_values(Figures()), *figures])
    return out.getvalue()


def _cost_cell(figures: Figures) -> str:
    # A group whose jobs all lack a price has no cost figure at all: never print it as 0.00.
    if figures.priced_jobs == 0 and figures.jobs:
        return "n/a*"
    return format_usd(figures.cost_pico) + ("*" if figures.unpriced_jobs or figures.unmeterable_jobs else "")


# The table's figure columns in the order they are shown, each with how to print it.
TABLE_COLUMNS: dict[str, Callable[[Figures], str]] = {
    "JOBS": lambda f: str(f.jobs),
    "COST_USD": _cost_cell,
    "PROMPT": lambda f: str(f.prompt),
    "CACHED": lambda f: str(f.cached),
    "CANDIDATES": lambda f: str(f.candidates),
    "THOUGHTS": lambda f: str(f.thoughts),
    "TOOL_USE_PROMPT": lambda f: str(f.tool_use_prompt),
    "LINES_OK": lambda f: str(f.succeeded),
    "LINES_FAILED": lambda f: str(f.failed),
    "LINES_MALFORMED": lambda f: str(f.malformed),
    "UNPRICED": lambda f: str(f.unpriced_jobs),
    "UNMETERABLE": lambda f: str(f.unmeterable_jobs),
}
ALWAYS = ("JOBS", "COST_USD")
# Which columns stay when the table must narrow, most wanted first (the notes count unpriced and unmeterable jobs
# anyway, and malformed lines and tool-use prompts are rare).
KEEP_ORDER = (*ALWAYS, "PROMPT", "CANDIDATES", "LINES_OK", "LINES_FAILED", "CACHED", "THOUGHTS", "UNPRICED",
              "UNMETERABLE", "LINES_MALFORMED", "TOOL_USE_PROMPT")
_GAP = 2


def parse_columns(text: str) -> tuple[str, ...]:
    """`jobs,cost_usd,prompt` (or `all`) -> the table's figure columns, in the table's order."""
    if text.strip().lower() == "all":
        return tuple(TABLE_COLUMNS)
    wanted = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in TABLE_COLUMNS]
    if unknown or not wanted:
        raise ReportError(f"unknown column {', '.join(unknown) or '(none)'}: use any of "
                          f"{','.join(name.lower() for name in TABLE_COLUMNS)}, or all")
    return tuple(name for name in TABLE_COLUMNS if name in wanted)


def _key_widths(headers: list[str], cells: list[list[str]]) -> list[int]:
    return [max(len(line[i]) for line in [headers, *cells]) for i in range(len(headers))]


def _width(key_widths: list[int], widths: dict[str, int], columns: tuple[str, ...]) -> int:
    """The width of a table line with these keys and figure columns."""
    return sum(key_widths) + sum(widths[c] for c in columns) + _GAP * (len(key_widths) + len(columns) - 1)


def _fit(widths: dict[str, int], key_widths: list[int], width: int) -> tuple[str, ...]:
    """The figure columns that fit in `width` next to the keys, dropping the least wanted first."""
    chosen = list(KEEP_ORDER)
    while len(chosen) > len(ALWAYS) and _width(key_widths, widths, tuple(chosen)) > width:
        chosen.pop()
    return tuple(name for name in TABLE_COLUMNS if name in chosen)


def to_table(report: Report, *, width: int | None = None, columns: tuple[str, ...] | None = None,
             details: ReportDetails | None = None, budgets: list[BudgetStatus] | None = None) -> str:
    """Aligned columns, a TOTAL line, and notes on unpriced, unmeterable, no-output and in-flight jobs.

    `columns`: the figure columns to show; else those that fit in `width` characters (None: every column).
    """
    keys = len(report.by)
    key_cells = [["" if v is None else v for v in row.key] for row in report.rows]
    key_cells.append(["TOTAL"] + [""] * (keys - 1) if keys else [])
    key_headers = [k.upper() for k in report.by]
    figures = [row.figures for row in report.rows] + [report.totals]
    values = {name: [show(f) for f in figures] for name, show in TABLE_COLUMNS.items()}
    widths = {name: max(len(name), *(len(v) for v in values[name])) for name in TABLE_COLUMNS}
    key_widths = _key_widths(key_headers, key_cells)
    fitted = columns is None and width is not None
    if width is None:
        columns = columns or tuple(TABLE_COLUMNS)
    shortened = False
    if width is not None and "job" in report.by:
        # A job's full name is ~85 characters; its id alone (19 digits) tells jobs apart. Shown when the full
        # names do not fit, or leave out figure columns that the ids leave room for.
        at = report.by.index("job")
        short_cells = [[cell.rsplit("/", 1)[-1] if i == at and n < len(key_cells) - 1 else cell
                        for i, cell in enumerate(cells)] for n, cells in enumerate(key_cells)]
        short_widths = _key_widths(key_headers, short_cells)
        full = columns or _fit(widths, key_widths, width)
        short = columns or _fit(widths, short_widths, width)
        if len(short) > len(full) or _width(key_widths, widths, full) > width:
            key_cells, key_widths, shortened = short_cells, short_widths, True
    if columns is None:
        assert width is not None
        columns = _fit(widths, key_widths, width)
    left_out = [name for name in TABLE_COLUMNS if name not in columns] if fitted else []
    header = key_headers + list(columns)
    all_widths = key_widths + [widths[name] for name in columns]
    lines = [cells + [values[name][i] for name in columns] for i, cells in enumerate(key_cells)]

    def format_line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < keys else c.rjust(w) for i, (c, w) in enumerate(zip(cells, all_widths,
                                                                                       strict=True))]
        return (" " * _GAP).join(parts).rstrip()

    rule = (" " * _GAP).join("-" * w for w in all_widths)
    text = [format_line(header), rule, *(format_line(line) for line in lines[:-1]), rule, format_line(lines[-1])]
    text += [""] + _notes(report, details)
    if shortened:
        text.append(f"Jobs are shown by their id to fit {width} characters (full names: --format csv or json).")
    if left_out:
        text.append(f"Columns left out to fit {width} characters: {', '.join(left_out)} "
                    "(choose with --columns, e.g. --columns all; or use --format csv).")
    if budgets is not None:
        text += ["", *budget_lines.table_lines(budgets)]
    return "\n".join(text).rstrip() + "\n"


def _range_text(report: Report) -> str:
    since, until = report.filter.since, report.filter.until
    start = since.strftime("%Y-%m-%d %H:%M:%S") if since else "the first job"
    end = until.strftime("%Y-%m-%d %H:%M:%S") if until else "now"
    return f"Jobs created in [{start}, {end}) UTC; cost in USD, priced jobs only."


def _job_notes(jobs: list[JobLine], total: int, text: Callable[[JobLine], str]) -> list[str]:
    notes = [f"  {job.name}: {text(job)}" for job in jobs]
    if total > len(jobs):
        notes.append(f"  ... and {total - len(jobs)} more (`vbp report --by job,state`, or the dashboard)")
    return notes


def _notes(report: Report, details: ReportDetails | None = None) -> list[str]:
    notes = [_range_text(report)]
    totals = report.totals
    if totals.unpriced_jobs:
        notes.append(f"* {totals.unpriced_jobs} unpriced job(s): no price for their model; their tokens are counted, "
                     "their cost is not (add the price, then run `vbp reprice`).")
    if totals.unmeterable_jobs:
        notes.append(f"* {totals.unmeterable_jobs} unmeterable job(s) (e.g. BigQuery output): no cost figure.")
    if details is not None and details.no_output:
        notes.append(f"{details.no_output} job(s) ended with no output to meter: counted with 0 lines and 0.00 USD.")
        notes += _job_notes(details.no_output_jobs, details.no_output, lambda job: job.note or "")
    if report.in_flight:
        split = (f": {details.running} running, {details.waiting} ended and waiting to be metered"
                 if details is not None else "")
        notes.append(f"{report.in_flight} job(s) in flight (not metered yet) are not included{split}.")
    if details is not None and details.waiting:
        now = utcnow()
        notes += _job_notes(details.waiting_jobs, details.waiting, lambda job: job.progress.describe(now))
        notes.append("  (`vbp meter` checks and meters them now; `vbp meter --job NAME` one of them.)")
    return notes


def render(report: Report, fmt: str, *, width: int | None = None, columns: tuple[str, ...] | None = None,
           details: ReportDetails | None = None, budgets: list[BudgetStatus] | None = None) -> str:
    """The report in `fmt`: table (fitted to `width`, or with `columns`, and notes from `details`), csv or json;
    with `budgets`, their lines too (`--by team`)."""
    if fmt == "json":
        return to_json(report, budgets)
    if fmt == "csv":
        return to_csv(report, budgets)
    if fmt == "table":
        return to_table(report, width=width, columns=columns, details=details, budgets=budgets)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
