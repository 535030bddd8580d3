"""The budgets: a USD limit per team (or per key of a team), per UTC calendar month or in total.

What a budget has used is read from the ledger each time, never kept as a running figure that could drift:
`spent` is the metered cost of the jobs it covers (created in its period), `reserved` what creates hold against it
and has not yet turned into a metered cost, `remaining` = limit - spent - reserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from proxy.ledger.models import Budget, BudgetReservation, Job
from proxy.money import PICO_PER_USD, format_usd
from proxy.tenancy.keys import TEAM_RE

PERIODS = ("month", "total")
HOLDING = ("held", "bound")  # the reservation states that count as reserved


def usd_to_pico(text: str | Decimal) -> int:
    """A USD amount (`"250"`, `"0.50"`) as whole pUSD; ValueError for a negative, non-finite or finer amount."""
    try:
        amount = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount of USD") from None
    pico = amount * PICO_PER_USD if amount.is_finite() else Decimal(-1)
    if pico < 0 or pico != pico.to_integral_value():
        raise ValueError(f"{text!r} is not an amount of USD (0 or more, at most 12 decimals)")
    return int(pico)


def period_start(period: str, now: datetime) -> datetime | None:
    """The first instant of the budget's current period (the UTC calendar month), None for `total`."""
    if period == "total":
        return None
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def period_label(period: str, now: datetime) -> str:
    """`2026-11-01` for the month of `now`, or `total`: a period's name in threshold events."""
    start = period_start(period, now)
    return "total" if start is None else start.date().isoformat()


@dataclass(frozen=True)
class BudgetStatus:
    """One budget and what it has used in its current period, in pUSD."""

    budget: Budget
    spent: int
    reserved: int

    @property
    def remaining(self) -> int:
        return self.budget.limit_pico - self.spent - self.reserved

    @property
    def name(self) -> str:
        """`team T` or `key K of team T`: how messages name the budget."""
        budget = self.budget
        return f"key {budget.key_id} of team {budget.team}" if budget.key_id else f"team {budget.team}"

    def to_json(self) -> dict[str, Any]:
        """What `vbp budgets list --json` and `/v1/budgets` show (amounts as exact decimal strings)."""
        budget = self.budget
        return {"team": budget.team, "key_id": budget.key_id or None, "period": budget.period,
                "limit_usd": format_usd(budget.limit_pico), "spent_usd": format_usd(self.spent),
                "reserved_usd": format_usd(self.reserved), "remaining_usd": format_usd(self.remaining),
                "allow_unestimated": budget.allow_unestimated}


def check_scope(team: str, key_id: str | None, period: str) -> None:
    """ValueError for a team name that is not one, or a period other than month/total."""
    if not isinstance(team, str) or TEAM_RE.fullmatch(team) is None:
        raise ValueError(f"{team!r} is not a team name (lowercase letters, digits, _ and -, at most 63)")
    if key_id is not None and (not isinstance(key_id, str) or not key_id or len(key_id) > 32):
        raise ValueError(f"{key_id!r} is not a key id")
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")


def set_budget(session: Session, *, actor: str, team: str, key_id: str | None, limit_pico: int, period: str,
               allow_unestimated: bool | None = None, now: datetime) -> Budget:
    """Create or replace the budget of a team (or of one of its keys); ValueError names a bad value."""
    check_scope(team, key_id, period)
    row = session.scalars(select(Budget).where(Budget.team == team, Budget.key_id == (key_id or ""))).first()
    if row is None:
        row = Budget(team=team, key_id=key_id or "", allow_unestimated=False)
        session.add(row)
    row.period, row.limit_pico, row.updated_at, row.updated_by = period, limit_pico, now, actor[:64]
    if allow_unestimated is not None:
        row.allow_unestimated = allow_unestimated
    session.flush()
    return row


def remove_budget(session: Session, *, team: str, key_id: str | None) -> bool:
    """Remove a budget; False when there was none. Its reservations stay until their jobs are metered."""
    row = session.scalars(select(Budget).where(Budget.team == team, Budget.key_id == (key_id or ""))).first()
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def covering(session: Session, *, team: str, key_id: str, lock: bool = False) -> list[Budget]:
    """The budgets that cover a key: its team's and its own, in id order; `lock`: SELECT ... FOR UPDATE."""
    query = select(Budget).where(Budget.team == team, Budget.key_id.in_(("", key_id))).order_by(Budget.id)
    return list(session.scalars(query.with_for_update() if lock else query))


def status(session: Session, budget: Budget, *, now: datetime) -> BudgetStatus:
    """What the budget has spent and reserved in its current period."""
    start = period_start(budget.period, now)
    spent = select(func.coalesce(func.sum(Job.cost_pico), 0)).where(Job.team == budget.team,
                                                                    Job.cost_pico.is_not(None))
    held = select(func.coalesce(func.sum(BudgetReservation.amount_pico), 0)).where(
        BudgetReservation.team == budget.team, BudgetReservation.state.in_(HOLDING))
    if budget.key_id:
        spent = spent.where(Job.key_id == budget.key_id)
        held = held.where(BudgetReservation.key_id == budget.key_id)
    if start is not None:
        spent = spent.where(Job.create_time >= start)
        held = held.where(BudgetReservation.created_at >= start)
    return BudgetStatus(budget, int(session.scalar(spent) or 0), int(session.scalar(held) or 0))


def list_budgets(session: Session, *, now: datetime, team: str | None = None) -> list[BudgetStatus]:
    """Every budget (or one team's), by team then key, with its figures."""
    query = select(Budget).order_by(Budget.team, Budget.key_id)
    if team is not None:
        query = query.where(Budget.team == team)
    return [status(session, budget, now=now) for budget in session.scalars(query)]
