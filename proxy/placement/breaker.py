"""The circuit breaker of a placement target, kept on its `placement_targets` row so every replica agrees.

- closed (healthy): placed on normally. Each failure (5xx, timeout, connection error, 429) adds one to `failures`;
  a success sets it back to 0.
- open (cooling down): after `threshold` consecutive failures, the target is skipped until `open_until`, for
  `cooldown` seconds doubled at each further failure, at most `max_cooldown`. A 429 with Retry-After opens it at
  once for at least that long (the upstream said when to come back).
- half-open (probing): once `open_until` has passed, ONE create may try it; the replica that claims it sets
  `probe_until` (`probe` seconds) so the others keep skipping it meanwhile. The probe's success closes the
  breaker; its failure opens it again, for twice as long.
An upstream that answers "full" (`token_limit_exceeded`) is alive: that is a capacity answer, not a failure.

Kept in the ledger rather than per replica because a replica that just started would otherwise hammer a failing
upstream its peers already know about, and the cooldown must survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from proxy.ledger.models import PlacementTarget

HEALTHY, COOLING, PROBING = "healthy", "cooling", "probing"


@dataclass(frozen=True)
class BreakerRules:
    """The breaker's figures (seconds)."""

    threshold: int = 3
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    probe: float = 60.0


def health(row: PlacementTarget | None, now: datetime) -> str:
    """`healthy`, `cooling` (open), or `probing` (half-open: the cooldown is over, a probe may go)."""
    if row is None or row.open_until is None:
        return HEALTHY
    return COOLING if row.open_until > now else PROBING


def may_try(row: PlacementTarget | None, now: datetime) -> bool:
    """Whether a create may go to the target now: closed, or half-open with no probe in flight."""
    state = health(row, now)
    if state == PROBING:
        assert row is not None
        return row.probe_until is None or row.probe_until <= now
    return state == HEALTHY


def start_probe(row: PlacementTarget, now: datetime, rules: BreakerRules) -> None:
    """A create claimed a half-open target: the others wait for its outcome (or `probe` seconds)."""
    if health(row, now) == PROBING:
        row.probe_until = now + timedelta(seconds=rules.probe)


def succeeded(row: PlacementTarget, now: datetime) -> None:
    """The upstream took a create (or answered that it is full): the breaker closes."""
    row.failures, row.open_until, row.probe_until = 0, None, None


def failed(row: PlacementTarget, now: datetime, rules: BreakerRules, *, retry_after: float | None = None) -> None:
    """One more consecutive failure: open the breaker at the threshold, or again after a failed probe."""
    was_open = row.open_until is not None
    row.failures = (row.failures or 0) + 1
    row.probe_until = None
    until = row.open_until if was_open else None
    if was_open or row.failures >= rules.threshold:
        doublings = max(0, row.failures - rules.threshold)
        seconds = min(rules.cooldown * 2 ** min(doublings, 30), rules.max_cooldown)
        until = now + timedelta(seconds=seconds)
    if retry_after is not None and retry_after > 0:
        until = max(until or now, now + timedelta(seconds=retry_after))
    row.open_until = until
