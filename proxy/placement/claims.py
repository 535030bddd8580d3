"""Placements in the ledger: tokens held on a target, claimed in one locked transaction so that replicas placing
at once never overfill a quota together (as budgets' reservations never overspend: `proxy.budgets.reservation`).

`claim` is the one call a create makes per try: in ONE transaction it locks the targets' rows
(`SELECT ... FOR UPDATE` on PostgreSQL, the write lock on SQLite: `proxy.ledger.write_lock`), reads what each
holds, orders them (`proxy.placement.choice`), and writes a `held` placement on the best one, or raises NoRoom.

What a target holds (its queued tokens) is the larger of two figures:
- the ledger's: the tokens of its placements still `held` (a create in flight; one older than `HELD_GRACE` is a
  create that died and no longer counts) and of those `placed` whose job has not ended (`jobs.metering_state` is
  still NULL);
- the upstream's: the enqueued tokens it last reported (Azure's `deployment-enqueued-tokens` create header, or
  its `token_limit_exceeded` refusal), plus the tokens placed there since, trusted for `REPORT_TRUST` seconds
  (batches end upstream meanwhile, which only the ledger learns). It catches what the ledger cannot see: other
  clients of the same deployment, and the estimate's drift.
Its quota is the catalog's `enqueued_token_quota`, else the last `deployment-maximum-enqueued-tokens` reported.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from proxy.ledger.models import Job, Placement, PlacementTarget
from proxy.ledger.write_lock import serialise_on_sqlite
from proxy.placement import breaker
from proxy.placement.breaker import BreakerRules
from proxy.placement.choice import Target, TargetFigures, ordered

HELD_GRACE = timedelta(minutes=30)
REPORT_TRUST = timedelta(minutes=5)
FULL_RETRY_AFTER = 60  # seconds: when every target is full, queues drain as batches end, at no known time


class NoRoom(Exception):
    """No target can take the batch now; `retry_after` (seconds) is when one may; `full` when every target left
    was healthy but had no room (none is cooling down)."""

    def __init__(self, message: str, retry_after: int, *, full: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.full = full


@dataclass(frozen=True)
class Claim:
    """A `held` placement: its id, where, and the target's figures before it."""

    placement_id: str
    figures: TargetFigures
    tokens: int

    @property
    def target(self) -> Target:
        return self.figures.target


def _ensure_rows(session: Session, names: Iterable[str]) -> None:
    values = [{"name": name, "failures": 0, "last_outcome": "", "last_error": ""} for name in sorted(set(names))]
    if not values:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(PlacementTarget).values(values).on_conflict_do_nothing(index_elements=["name"]))


def _rows(session: Session, names: Iterable[str], *, lock: bool) -> dict[str, PlacementTarget]:
    query = select(PlacementTarget).where(PlacementTarget.name.in_(sorted(set(names)))).order_by(
        PlacementTarget.name)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # in name order: two creates lock the same rows in the same order
    return {row.name: row for row in session.scalars(query.execution_options(populate_existing=True))}


def _counted(now: datetime) -> ColumnElement[bool]:
    return or_(and_(Placement.state == "held", Placement.created_at >= now - HELD_GRACE),
               and_(Placement.state == "placed", Job.id.is_not(None), Job.metering_state.is_(None)))


def _queued(session: Session, names: Sequence[str], now: datetime,
            since: dict[str, datetime] | None = None) -> dict[str, int]:
    """Tokens each target holds in the ledger (or, with `since`, placed there after each target's time)."""
    query = (select(Placement.target, func.coalesce(func.sum(Placement.tokens), 0))
             .outerjoin(Job, Job.id == Placement.job_pk)
             .where(Placement.target.in_(names), _counted(now)).group_by(Placement.target))
    if since is not None:
        query = query.where(or_(*[and_(Placement.target == name, Placement.created_at > at)
                                  for name, at in since.items()]))
    return {name: int(total) for name, total in session.execute(query)}


def figures(session: Session, targets: Sequence[Target], *, now: datetime,
            rows: dict[str, PlacementTarget] | None = None) -> list[TargetFigures]:
    """Each target's effective quota, queued tokens and health, now (reads only)."""
    names = [target.name for target in targets]
    rows = _rows(session, names, lock=False) if rows is None else rows
    ledger = _queued(session, names, now)
    trusted = {name: row.reported_at for name, row in rows.items()
               if row.reported_at is not None and row.reported_enqueued is not None
               and row.reported_at >= now - REPORT_TRUST}
    since = _queued(session, list(trusted), now, since=trusted) if trusted else {}
    out = []
    for target in targets:
        row = rows.get(target.name)
        queued = ledger.get(target.name, 0)
        if row is not None and target.name in trusted:
            queued = max(queued, int(row.reported_enqueued or 0) + since.get(target.name, 0))
        quota = target.quota if target.quota is not None else (row.reported_quota if row is not None else None)
        out.append(TargetFigures(target, quota, queued, breaker.health(row, now), breaker.may_try(row, now)))
    return out


def _retry_after(rows: dict[str, PlacementTarget], now: datetime) -> int:
    """Seconds until a cooling target may be probed, or FULL_RETRY_AFTER when they are only full."""
    waits = [(row.open_until - now).total_seconds() for row in rows.values()
             if row.open_until is not None and row.open_until > now]
    return max(1, math.ceil(min(waits))) if waits else FULL_RETRY_AFTER


def _why_not(figure: TargetFigures, tokens: int) -> str:
    if not figure.available:
        return f"{figure.target.name} is {figure.health} after failures"
    return f"{figure.target.name} has {figure.headroom} of {figure.quota} queued tokens free"


def claim(session: Session, *, targets: Sequence[Target], tokens: int, team: str, model: str, now: datetime,
          exclude: Iterable[str] = (), rules: BreakerRules | None = None) -> Claim:
    """Hold `tokens` on the best target not in `exclude`, or raise NoRoom. Call it first in a fresh transaction."""
    rules = rules or BreakerRules()
    serialise_on_sqlite(session)
    names = [target.name for target in targets]
    _ensure_rows(session, names)
    rows = _rows(session, names, lock=True)
    skip = set(exclude)
    all_figures = figures(session, targets, now=now, rows=rows)
    candidates = ordered([f for f in all_figures if f.target.name not in skip], tokens)
    if not candidates:
        reasons = "; ".join(_why_not(f, tokens) for f in all_figures if f.target.name not in skip)
        tried = f" ({', '.join(sorted(skip))} refused it)" if skip else ""
        raise NoRoom(f"No deployment of {model} can take this batch of {tokens} queued tokens now{tried}"
                     f"{': ' + reasons if reasons else ''}.", _retry_after(rows, now),
                     full=all(f.available for f in all_figures if f.target.name not in skip))
    best = candidates[0]
    breaker.start_probe(rows[best.target.name], now, rules)
    placement = Placement(id=secrets.token_hex(8), target=best.target.name, team=team[:64], model=model[:200],
                          tokens=tokens, state="held", created_at=now, updated_at=now, note="")
    session.add(placement)
    session.flush()
    return Claim(placement.id, best, tokens)


def bind(session: Session, *, placement_id: str, job_pk: int, now: datetime) -> None:
    """The create's job is in the ledger: its tokens count until the job ends (a released placement whose job
    turned up after all counts again)."""
    session.execute(update(Placement).where(Placement.id == placement_id,
                                            Placement.state.in_(("held", "released")))
                    .values(state="placed", job_pk=job_pk, updated_at=now))


def release(session: Session, *, placement_id: str, now: datetime, note: str) -> None:
    """The create produced no job: its tokens no longer count."""
    session.execute(update(Placement).where(Placement.id == placement_id, Placement.state == "held")
                    .values(state="released", updated_at=now, note=note[:500]))


def _target_row(session: Session, name: str) -> PlacementTarget:
    serialise_on_sqlite(session)
    _ensure_rows(session, [name])
    return _rows(session, [name], lock=True)[name]


def _report(row: PlacementTarget, now: datetime, enqueued: int | None, quota: int | None) -> None:
    if enqueued is not None:
        row.reported_enqueued, row.reported_at = enqueued, now
    if quota is not None:
        row.reported_quota = quota


def record_success(session: Session, *, target: str, now: datetime, enqueued: int | None = None,
                   quota: int | None = None) -> None:
    """The upstream took a create: the breaker closes; its enqueued-token figures (if any) are kept."""
    row = _target_row(session, target)
    breaker.succeeded(row, now)
    row.last_outcome, row.last_outcome_at, row.last_error = "ok", now, ""
    _report(row, now, enqueued, quota)


def record_failure(session: Session, *, target: str, now: datetime, error: str, retry_after: float | None = None,
                   rules: BreakerRules | None = None) -> None:
    """The upstream failed a create (5xx, timeout, connection error, 429): one more toward its cooldown."""
    row = _target_row(session, target)
    breaker.failed(row, now, rules or BreakerRules(), retry_after=retry_after)
    row.last_outcome, row.last_outcome_at, row.last_error = "failed", now, error[:500]


def record_full(session: Session, *, target: Target, now: datetime, error: str, enqueued: int | None = None,
                quota: int | None = None, rules: BreakerRules | None = None) -> None:
    """The upstream refused a create as over its quota (`token_limit_exceeded`): it counts as full, at the
    figure it gave or else at its quota, for REPORT_TRUST; with no figure at all it is skipped for a cooldown."""
    row = _target_row(session, target.name)
    breaker.succeeded(row, now)
    quota = quota if quota is not None else (target.quota if target.quota is not None else row.reported_quota)
    _report(row, now, enqueued if enqueued is not None else quota, quota)
    if enqueued is None and quota is None:
        row.open_until = now + timedelta(seconds=(rules or BreakerRules()).cooldown)
    row.last_outcome, row.last_outcome_at, row.last_error = "full", now, error[:500]


def placement_counts(session: Session, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """`{target: {state: placements}}` of every placement ever made on the targets."""
    counts: dict[str, dict[str, int]] = {}
    for name, state, count in session.execute(
            select(Placement.target, Placement.state, func.count()).where(Placement.target.in_(names))
            .group_by(Placement.target, Placement.state)):
        counts.setdefault(name, {})[state] = int(count)
    return counts
