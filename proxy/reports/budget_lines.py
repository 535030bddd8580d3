"""Budget lines in reports: each team budget's limit, spent, reserved and remaining, for its current period.

`vbp report --by team` and the dashboard show them beside the cost figures. They are the budgets' own figures
(`proxy.budgets.store`: spent is the metered cost of the team's jobs created in the budget's period, as of now),
not sums over the report's date range. Budgets of single keys are in `vbp budgets list`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from proxy.budgets.store import BudgetStatus, list_budgets

HEADERS = ("TEAM", "PERIOD", "BUDGET_USD", "SPENT_USD", "RESERVED_USD", "REMAINING_USD")
CSV_FIELDS = ("budget_period", "budget_usd", "budget_spent_usd", "budget_reserved_usd", "budget_remaining_usd")


def team_budgets(session: Session, *, teams: Sequence[str] = (), now: datetime) -> list[BudgetStatus]:
    """The team budgets of `teams` (every team's when empty), by team, with their figures as of `now`."""
    return [status for status in list_budgets(session, now=now)
            if not status.budget.key_id and (not teams or status.budget.team in teams)]


def cells(status: BudgetStatus) -> tuple[str, ...]:
    """PERIOD, BUDGET_USD, SPENT_USD, RESERVED_USD, REMAINING_USD of one budget, exact."""
    figures = status.to_json()
    return (status.budget.period, figures["limit_usd"], figures["spent_usd"], figures["reserved_usd"],
            figures["remaining_usd"])


def table_lines(budgets: list[BudgetStatus]) -> list[str]:
    """The budgets as an aligned block under the report's table (none: a line saying so)."""
    if not budgets:
        return ["No team budget (set one with `vbp budgets set --team T --usd N`)."]
    rows = [list(HEADERS)] + [[status.budget.team, *cells(status)] for status in budgets]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             .rstrip() for row in rows]
    return ["Budgets (their current period, as of now; spent = metered cost of the jobs created in it):",
            lines[0], "  ".join("-" * w for w in widths), *lines[1:]]
