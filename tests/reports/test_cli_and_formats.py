"""`vbp report` as a command: JSON exactly as docs/design.md says, CSV that parses back to the same numbers, a table
with a totals row and the unpriced, unmeterable and in-flight jobs shown apart."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

from proxy.cli import cli
from proxy.money import format_usd
from tests.reports.conftest import UNPRICED_MODEL, Ledger, expected_report

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

ROW_FIELDS = {"jobs", "cost_usd", "tokens", "lines", "unpriced_jobs", "unmeterable_jobs"}


def vbp_report(ledger: Ledger, *args: str, columns: int = 300) -> str:
    """`vbp report` in a terminal `columns` wide; its stdout (stderr names the ledger)."""
    url = str(ledger.sessions.kw["bind"].url.render_as_string(hide_password=False))
    result = CliRunner().invoke(cli, ["report", *args], env={"VBP_DATABASE_URL": url, "COLUMNS": str(columns)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"ledger: {url}\n")
    return result.stdout


def from_csv(text: str, by: tuple[str, ...]) -> list[dict[str, Any]]:
    """CSV rows back into the JSON row shape (numbers as ints, cost as the exact string)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for row in rows:
        out.append({**{k: row[k] or None for k in by}, "jobs": int(row["jobs"]), "cost_usd": row["cost_usd"],
                    "tokens": {k: int(row[f"tokens_{k}"]) for k in ("prompt", "cached", "candidates", "thoughts",
                                                                   "tool_use_prompt")},
                    "lines": {k: int(row[f"lines_{k}"]) for k in ("succeeded", "failed", "malformed")},
                    "unpriced_jobs": int(row["unpriced_jobs"]), "unmeterable_jobs": int(row["unmeterable_jobs"])})
    return out


@pytest.mark.parametrize("by", [("team", "model"), ("job",), ("week", "key")], ids=",".join)
def test_json_follows_the_design_document_exactly(ledger: Ledger, by: tuple[str, ...]) -> None:
    document = json.loads(vbp_report(ledger, "--by", ",".join(by), "--format", "json"))
    assert set(document) == {"rows", "totals", "in_flight_jobs"}
    assert document["in_flight_jobs"] == 1  # the job still running: in no row, counted here
    for row in document["rows"]:
        assert list(row) == [*by, "jobs", "cost_usd", "tokens", "lines", "unpriced_jobs", "unmeterable_jobs"]
        assert list(row["tokens"]) == ["prompt", "cached", "candidates", "thoughts", "tool_use_prompt"]
        assert list(row["lines"]) == ["succeeded", "failed", "malformed"]
        Decimal(row["cost_usd"])  # an exact decimal string
    assert set(document["totals"]) == ROW_FIELDS
    assert document == expected_report(ledger.jobs, by)
    if by == ("job",):
        assert {row["job"] for row in document["rows"]} == {j.name for j in ledger.jobs}
        assert all(row["job"].startswith("projects/") and "/batchPredictionJobs/" in row["job"]
                   for row in document["rows"])


@pytest.mark.parametrize("by", [("team", "model"), ("day", "team"), ("job",)], ids=",".join)
def test_csv_parses_back_to_the_same_numbers(ledger: Ledger, by: tuple[str, ...]) -> None:
    text = vbp_report(ledger, "--by", ",".join(by), "--format", "csv")
    header = next(csv.reader(io.StringIO(text)))
    assert header == [*by, "jobs", "cost_usd", "tokens_prompt", "tokens_cached", "tokens_candidates",
                      "tokens_thoughts", "tokens_tool_use_prompt", "lines_succeeded", "lines_failed",
                      "lines_malformed", "unpriced_jobs", "unmeterable_jobs"]
    want = expected_report(ledger.jobs, by)
    assert from_csv(text, by) == want["rows"]  # one line per group, no totals line
    total = sum((Decimal(r["cost_usd"]) for r in from_csv(text, by)), Decimal(0))
    assert format_usd(int(total * 10**12)) == want["totals"]["cost_usd"]


def test_table_has_totals_and_shows_unpriced_unmeterable_and_in_flight_apart(ledger: Ledger) -> None:
    text = vbp_report(ledger, "--by", "team,model")
    want = expected_report(ledger.jobs, ("team", "model"))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["TEAM", "MODEL", "JOBS"]
    total = next(line for line in lines if line.startswith("TOTAL"))
    totals = want["totals"]
    assert total.split()[1:3] == [str(totals["jobs"]), totals["cost_usd"] + "*"]
    unpriced = next(line for line in lines if UNPRICED_MODEL in line)
    assert unpriced.split()[2:4] == ["1", "n/a*"]  # no price: never printed as 0.00
    for row in want["rows"]:
        if not row["unpriced_jobs"] and not row["unmeterable_jobs"]:
            line = next(x for x in lines if x.split()[:2] == [row["team"], row["model"]])
            assert line.split()[2:4] == [str(row["jobs"]), row["cost_usd"]]
    assert "1 unpriced job(s)" in text and "1 unmeterable job(s)" in text
    assert ("1 job(s) in flight (not metered yet) are not included: 1 running, 0 ended and waiting to be metered."
            in lines)
    assert "[the first job, now) UTC" in text


def test_the_table_says_which_jobs_ended_with_no_output_and_why(ledger: Ledger) -> None:
    [failed] = [job for job in ledger.jobs if job.state == "JOB_STATE_FAILED" and job.cost_status == "priced"]
    lines = vbp_report(ledger, "--by", "team").splitlines()
    assert "1 job(s) ended with no output to meter: counted with 0 lines and 0.00 USD." in lines
    [why] = [line for line in lines if line.startswith(f"  {failed.name}: ")]
    assert why.removeprefix(f"  {failed.name}: ").startswith("ended FAILED with no output file under gs://metering/")
    assert why.endswith(": nothing is billed")


@pytest.mark.parametrize("by", [("team", "model"), ("job",), ("day", "team", "model")], ids=",".join)
def test_the_table_fits_a_terminal_100_columns_wide(ledger: Ledger, by: tuple[str, ...]) -> None:
    wide = vbp_report(ledger, "--by", ",".join(by), columns=300).splitlines()
    assert len(wide[0]) > 100 and "TOOL_USE_PROMPT" in wide[0]  # every column: too wide for 100
    assert not any(line.startswith("Columns left out") for line in wide)
    table = vbp_report(ledger, "--by", ",".join(by), columns=100).splitlines()
    body = table[:table.index("")]  # header, rule, rows, rule, TOTAL
    assert max(len(line) for line in body) <= 100
    header = body[0].split()
    assert header[:len(by) + 2] == [*(k.upper() for k in by), "JOBS", "COST_USD"]
    left_out = [name for name in wide[0].split() if name not in header]
    assert left_out and "PROMPT" in header
    assert (f"Columns left out to fit 100 characters: {', '.join(left_out)} (choose with --columns, e.g. "
            "--columns all; or use --format csv).") in table
    if by == ("job",):  # full names (~85 characters) would leave room for JOBS and COST_USD only
        assert "Jobs are shown by their id to fit 100 characters (full names: --format csv or json)." in table
        assert {line.split()[0] for line in body[2:-2]} == {job.name.rsplit("/", 1)[1] for job in ledger.jobs}
    # the figures that are shown are the same as in the wide table
    total = next(line for line in table if line.startswith("TOTAL")).split()
    wide_total = next(line for line in wide if line.startswith("TOTAL")).split()
    assert dict(zip(header[len(by):], total[1:], strict=True)).items() <= dict(
        zip(wide[0].split()[len(by):], wide_total[1:], strict=True)).items()


def test_columns_picks_the_figures_and_all_shows_every_one(ledger: Ledger) -> None:
    table = vbp_report(ledger, "--by", "team", "--columns", "cost_usd,lines_failed,jobs", columns=40)
    assert table.splitlines()[0].split() == ["TEAM", "JOBS", "COST_USD", "LINES_FAILED"]  # in the table's order
    assert "Columns left out" not in table
    every = vbp_report(ledger, "--by", "team", "--columns", "all", columns=40)
    assert every.splitlines()[0].split()[1:] == [
        "JOBS", "COST_USD", "PROMPT", "CACHED", "CANDIDATES", "THOUGHTS", "TOOL_USE_PROMPT", "LINES_OK",
        "LINES_FAILED", "LINES_MALFORMED", "UNPRICED", "UNMETERABLE"]


def test_csv_counts_the_jobs_in_flight_on_stderr(ledger: Ledger) -> None:
    url = str(ledger.sessions.kw["bind"].url.render_as_string(hide_password=False))
    result = CliRunner().invoke(cli, ["report", "--format", "csv"], env={"VBP_DATABASE_URL": url})
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [f"ledger: {url}",
                                          "1 job(s) in flight (not metered yet) are not included."]
    assert "in flight" not in result.stdout


def test_filters_and_range_on_the_command_line(ledger: Ledger) -> None:
    document = json.loads(vbp_report(ledger, "--by", "team", "--since", "2026-03-30", "--until", "2027-01-01",
                                     "--team", "team-b", "--format", "json"))
    assert document["in_flight_jobs"] == 0
    assert document.pop("budgets") == []  # --by team lists the team budgets: this ledger has none
    assert document == expected_report(
        ledger.jobs, ("team",),
        lambda j: j.team == "team-b" and "2026-03-30" <= j.created.date().isoformat() < "2027-01-01")
    assert document["rows"]


@pytest.mark.parametrize(("args", "message"), [
    (["--by", "team,colour"], "unknown grouping colour"),
    (["--since", "2026-13-01"], "is not a date"),
    (["--since", "2026-02-01", "--until", "2026-01-01"], "empty"),
    (["--format", "xml"], "Invalid value for '--format'"),
    (["--columns", "jobs,colour"], "unknown column COLOUR"),
])
def test_bad_options_are_usage_errors(ledger: Ledger, args: list[str], message: str) -> None:
    url = str(ledger.sessions.kw["bind"].url)
    result = CliRunner().invoke(cli, ["report", *args], env={"VBP_DATABASE_URL": url})
    assert result.exit_code == 2 and message in result.output
