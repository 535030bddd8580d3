"""The 80% threshold: when a budget's spent + reserved first reaches 80% of its limit in a period, it is recorded
once (a `budget_events` row, unique per budget, period and kind) and announced by `announce`.

`announce` runs inside the transaction that caused the crossing (a reservation or a metering), so the
`budget.threshold` event it writes into the webhooks' outbox commits or rolls back with it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from proxy.budgets import store
from proxy.ledger.models import BudgetEvent
from proxy.money import format_usd
from proxy.webhooks.outbox import enqueue_event

log = logging.getLogger(__name__)

KIND = "budget.threshold"
PERCENT = 80


def crossed(status: store.BudgetStatus) -> bool:
    """Whether spent + reserved is at least 80% of the limit (a zero limit is crossed at once)."""
    return 100 * (status.spent + status.reserved) >= PERCENT * status.budget.limit_pico


def check(session: Session, status: store.BudgetStatus, *, now: datetime) -> BudgetEvent | None:
    """Record and announce the crossing if this is the first of the budget's period; else None."""
    if not crossed(status):
        return None
    period = store.period_label(status.budget.period, now)
    done = session.scalar(select(BudgetEvent.id).where(BudgetEvent.budget_id == status.budget.id,
                                                       BudgetEvent.period_start == period, BudgetEvent.kind == KIND))
    if done is not None:
        return None
    event = BudgetEvent(budget_id=status.budget.id, period_start=period, kind=KIND, at=now,
                        detail={**status.to_json(), "percent": PERCENT, "period_start": period})
    try:
        with session.begin_nested():  # a racing transaction may record the same crossing: theirs stands
            session.add(event)
    except IntegrityError:
        return None
    announce(session, event.detail, budget_id=status.budget.id)
    return event


def announce(session: Session, detail: dict[str, Any], *, budget_id: int) -> None:
    """Tell the world a budget crossed 80%, in the crossing's transaction: a `budget.threshold` event for the
    team's webhooks (once per budget and period, by its dedupe key) and a log line."""
    enqueue_event(session, team=detail["team"], type=KIND, data={**detail, "budget_id": budget_id},
                  dedupe_key=f"{KIND}:{budget_id}:{detail['period_start']}")
    log.warning("budget of %s crossed %d%% for %s: %s USD of %s used (%s reserved)",
                f"key {detail['key_id']}" if detail["key_id"] else f"team {detail['team']}", PERCENT,
                detail["period_start"], format_usd(_pico(detail["spent_usd"]) + _pico(detail["reserved_usd"])),
                detail["limit_usd"], detail["reserved_usd"])


def _pico(usd: str) -> int:
    return store.usd_to_pico(usd)
