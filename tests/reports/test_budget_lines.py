"""Budget lines in `vbp report --by team` (table, CSV, JSON) and on the dashboard: each team budget's limit, spent,
reserved and remaining, from the report ledger's real metered jobs; the report's own fields unchanged."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import delete

from proxy.budgets import reservation, store
from proxy.clock import utcnow
from proxy.ledger.models import Budget, BudgetReservation
from proxy.money import format_usd
from tests.reports.conftest import Ledger, expected_report
from tests.reports.test_cli_and_formats import from_csv, vbp_report
from tests.reports.test_http import ALL, sign_in

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

LIMIT_A, LIMIT_B, LIMIT_Z, HELD = 5_000_000_000, 10**12, 2_500_000_000_000, 4_234_567_890  # pUSD


@dataclass
class Budgets:
    """What each team budget should show, in pUSD: {team: (period, limit, spent, reserved)}."""

    want: dict[str, tuple[str, int, int, int]]

    def json(self, team: str) -> dict[str, object]:
        period, limit, spent, reserved = self.want[team]
        return {"team": team, "key_id": None, "period": period, "limit_usd": format_usd(limit),
                "spent_usd": format_usd(spent), "reserved_usd": format_usd(reserved),
                "remaining_usd": format_usd(limit - spent - reserved), "allow_unestimated": False}

    def cells(self, team: str) -> list[str]:
        period, limit, spent, reserved = self.want[team]
        return [period, *(format_usd(x) for x in (limit, spent, reserved, limit - spent - reserved))]


@pytest.fixture
def budgets(ledger: Ledger) -> Iterator[Budgets]:
    """team-a: a monthly budget and a reservation held; team-b: a total budget; team-z: a budget and no job;
    a budget of one of team-a's keys (not a team budget: not shown). Removed afterwards."""
    now = utcnow()
    with ledger.sessions.begin() as session:
        for team, limit, period in (("team-a", LIMIT_A, "month"), ("team-b", LIMIT_B, "total"),
                                    ("team-z", LIMIT_Z, "month")):
            store.set_budget(session, actor="test", team=team, key_id=None, limit_pico=limit, period=period, now=now)
        store.set_budget(session, actor="test", team="team-a", key_id=ledger.env.key_ids["team-a"],
                         limit_pico=LIMIT_A, period="total", now=now)
    with ledger.sessions.begin() as session:
        reservation.reserve(session, team="team-a", key_id=ledger.env.key_ids["team-a"], model="gemini-2.5-flash",
                            high_pico=HELD, low_pico=1, project="p", location="us-central1", now=now)
    month = store.period_start("month", now)
    assert month is not None
    spent_a = sum(j.cost_pico for j in ledger.jobs if j.team == "team-a" and j.created >= month)
    spent_b = sum(j.cost_pico for j in ledger.jobs if j.team == "team-b")
    assert spent_b > 0
    try:
        yield Budgets({"team-a": ("month", LIMIT_A, spent_a, HELD), "team-b": ("total", LIMIT_B, spent_b, 0),
                       "team-z": ("month", LIMIT_Z, 0, 0)})
    finally:
        with ledger.sessions.begin() as session:
            session.execute(delete(BudgetReservation))
            session.execute(delete(Budget))


def test_json_by_team_adds_the_budgets_and_keeps_the_report(ledger: Ledger, budgets: Budgets) -> None:
    document = json.loads(vbp_report(ledger, "--by", "team", "--format", "json"))
    assert document.pop("budgets") == [budgets.json(team) for team in ("team-a", "team-b", "team-z")]
    assert document == expected_report(ledger.jobs, ("team",))
    only_b = json.loads(vbp_report(ledger, "--by", "team", "--team", "team-b", "--format", "json"))
    assert only_b["budgets"] == [budgets.json("team-b")]
    assert "budgets" not in json.loads(vbp_report(ledger, "--by", "team,model", "--format", "json"))


def test_the_table_by_team_shows_a_budget_block(ledger: Ledger, budgets: Budgets) -> None:
    lines = vbp_report(ledger, "--by", "team").splitlines()
    start = lines.index("Budgets (their current period, as of now; spent = metered cost of the jobs created in it):")
    header, rule, *rows = lines[start + 1:]
    assert header.split() == ["TEAM", "PERIOD", "BUDGET_USD", "SPENT_USD", "RESERVED_USD", "REMAINING_USD"]
    assert set(rule) == {"-", " "} and len(rule) == len(max(rows, key=len))
    assert [row.split() for row in rows] == [[team, *budgets.cells(team)] for team in ("team-a", "team-b", "team-z")]
    assert "Budgets" not in vbp_report(ledger, "--by", "team,model")


def test_csv_by_team_adds_budget_columns_and_a_line_for_a_budgeted_team_without_jobs(ledger: Ledger,
                                                                                      budgets: Budgets) -> None:
    text = vbp_report(ledger, "--by", "team", "--format", "csv")
    rows = {row["team"]: row for row in csv.DictReader(io.StringIO(text))}
    extra = ["budget_period", "budget_usd", "budget_spent_usd", "budget_reserved_usd", "budget_remaining_usd"]
    assert text.splitlines()[0].split(",")[-5:] == extra
    for team in ("team-a", "team-b", "team-z"):
        assert [rows[team][name] for name in extra] == budgets.cells(team)
    assert from_csv(text, ("team",))[:-1] == expected_report(ledger.jobs, ("team",))["rows"]  # the same rows ...
    assert (rows["team-z"]["jobs"], rows["team-z"]["cost_usd"]) == ("0", "0.00")  # ... and team-z's, empty


def test_the_dashboard_shows_the_budgets_a_key_may_see(ledger: Ledger, budgets: Budgets) -> None:
    with sign_in(ledger, ledger.env.keys["admin"]) as client:
        page = client.get("/dashboard", params=ALL).text
    table = re.search(r'<table id="budgets">.*?</table>', page)
    assert table is not None
    rows = re.findall(r"<tr[^>]*data-team.*?</tr>", table.group())
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows]
    period, limit, spent, reserved = budgets.want["team-a"]
    used = f"{(spent + reserved) * 100 // limit}%"
    assert cells == [["team-a", *budgets.cells("team-a"), used], ["team-b", *budgets.cells("team-b"), "0%"],
                     ["team-z", *budgets.cells("team-z"), "0%"]]
    assert [row.startswith('<tr class="flag"') for row in rows] == [True, False, False]  # 80% or more used
    with sign_in(ledger, ledger.env.keys["team-b"]) as client:
        page = client.get("/dashboard", params=ALL).text
    assert 'data-team="team-b"><td>team-b</td>' in page and "team-z" not in page and "team-a" not in page
