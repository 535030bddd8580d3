"""Reservations: an estimate's `high` held against every budget covering a create, before the upstream call.

`reserve` is the one call a create makes (the native door's, and the OpenAI door's): in ONE transaction it locks
the covering budgets, reads what each has spent and reserved, and either writes a `held` reservation or refuses
naming the budget that would go below zero. The lock is what keeps racing creates from overspending together:
- PostgreSQL: `SELECT ... FOR UPDATE` on the budget rows, so creates of one team queue on them across replicas;
- SQLite: `BEGIN IMMEDIATE`, which takes the database's write lock up front (waiting out the busy timeout the
  ledger's engine sets), so the read and the insert cannot interleave with another process's.

A reservation's life: `held` (written before the upstream call; it is also the create's intent record) ->
`bound` to the job once the job is in the ledger (by the create, or by reconciliation adopting the job from its
`vbp-reservation` label) -> `settled` when metering writes the job's cost (the cost then counts as spent), or
`released` (the upstream refused the create, the create never reached it, or the job cannot be metered).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from proxy.budgets import store, threshold
from proxy.ledger.models import BudgetReservation, Job
from proxy.ledger.write_lock import serialise_on_sqlite
from proxy.money import format_usd

log = logging.getLogger(__name__)

LABEL = "vbp-reservation"  # the job label that ties an upstream job to its reservation


@dataclass(frozen=True)
class Refusal:
    """The budget a create does not fit in: its name, what it has left, and the estimate, in pUSD."""

    budget: str
    remaining: int
    estimate: int

    def message(self) -> str:
        return (f"Budget exhausted: {self.budget} has {format_usd(self.remaining)} USD remaining, and this batch "
                f"is estimated at up to {format_usd(self.estimate)} USD. Nothing was sent upstream.")


class BudgetExceeded(Exception):
    """A reservation that would take a budget below zero; `refusal` says which and by how much."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message())
        self.refusal = refusal


def reserve(session: Session, *, team: str, key_id: str, model: str, high_pico: int, low_pico: int,
            project: str, location: str, now: datetime) -> BudgetReservation | None:
    """Hold `high_pico` against every budget covering the key and its team; None when no budget covers it.

    Call it first in a fresh transaction (`sessions.begin()`); BudgetExceeded leaves nothing written.
    """
    serialise_on_sqlite(session)
    budgets = store.covering(session, team=team, key_id=key_id, lock=True)
    if not budgets:
        return None
    statuses = [store.status(session, budget, now=now) for budget in budgets]
    for status in statuses:
        if status.remaining < high_pico:
            raise BudgetExceeded(Refusal(status.name, status.remaining, high_pico))
    reservation = BudgetReservation(id=secrets.token_hex(8), team=team, key_id=key_id, model=model[:200],
                                    project=project[:100], location=location[:64], amount_pico=high_pico,
                                    low_pico=low_pico, state="held", created_at=now, updated_at=now)
    session.add(reservation)
    session.flush()
    for status in statuses:
        threshold.check(session, store.BudgetStatus(status.budget, status.spent, status.reserved + high_pico),
                        now=now)
    return reservation


def bind(session: Session, *, reservation_id: str, job: Job, now: datetime) -> None:
    """Tie the reservation to its job (in the transaction that records the job). A reservation released
    meanwhile (reconciliation gave up on it) is held again: the job exists, so its cost will come."""
    session.execute(update(BudgetReservation).where(
        BudgetReservation.id == reservation_id, BudgetReservation.team == job.team,
        BudgetReservation.state.in_(("held", "bound", "released")))
        .values(state="bound", job_pk=job.id, updated_at=now, note=""))


def release(session: Session, *, reservation_id: str, now: datetime, note: str) -> None:
    """Let go of a reservation whose create did not produce a job."""
    session.execute(update(BudgetReservation).where(BudgetReservation.id == reservation_id,
                                                    BudgetReservation.state == "held")
                    .values(state="released", updated_at=now, note=note[:500]))


def settle_for_job(session: Session, *, job_pk: int, cost_pico: int | None, cost_status: str, now: datetime) -> None:
    """At metering (in its transaction): the job's reservation turns into its cost. An unpriced job keeps its
    reservation until it is priced; one that cannot be metered releases it."""
    if cost_status == "unpriced":
        return
    state = "settled" if cost_pico is not None else "released"
    rows = session.scalars(select(BudgetReservation).where(BudgetReservation.job_pk == job_pk,
                                                           BudgetReservation.state == "bound")).all()
    for row in rows:
        row.state, row.updated_at = state, now
        row.note = f"metered at {format_usd(cost_pico)} USD" if cost_pico is not None else f"job {cost_status}"
        for budget in store.covering(session, team=row.team, key_id=row.key_id):
            threshold.check(session, store.status(session, budget, now=now), now=now)


def stale_holds(session: Session, *, now: datetime, grace: float) -> list[BudgetReservation]:
    """Reservations still `held` (no job recorded) for longer than `grace` seconds: creates that died."""
    return list(session.scalars(select(BudgetReservation).where(
        BudgetReservation.state == "held", BudgetReservation.created_at < now - timedelta(seconds=grace))))


def settle_metered(session: Session, *, now: datetime) -> int:
    """Reconciliation's sweep: bound reservations whose job was metered without settling them (a job metered by
    an older proxy): settled at the job's cost, or released when it has none. Returns how many."""
    rows = session.execute(select(BudgetReservation, Job).join(Job, Job.id == BudgetReservation.job_pk).where(
        BudgetReservation.state == "bound", Job.metering_state.in_(("metered", "unmeterable")),
        Job.cost_status != "unpriced")).all()
    for reservation, job in rows:
        reservation.state = "settled" if job.cost_pico is not None else "released"
        reservation.updated_at = now
    return len(rows)
