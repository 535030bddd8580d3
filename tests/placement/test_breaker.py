"""The circuit breaker's states: closed, open (cooling down, doubling), half-open (one probe at a time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy.ledger.models import PlacementTarget
from proxy.placement import breaker
from proxy.placement.breaker import BreakerRules

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
RULES = BreakerRules(threshold=3, cooldown=30, max_cooldown=100, probe=60)


def _row() -> PlacementTarget:
    return PlacementTarget(name="d", failures=0, last_outcome="", last_error="")


def test_it_opens_after_three_consecutive_failures() -> None:
    row = _row()
    breaker.failed(row, NOW, RULES)
    breaker.failed(row, NOW, RULES)
    assert (row.failures, row.open_until, breaker.health(row, NOW)) == (2, None, "healthy")
    breaker.failed(row, NOW, RULES)
    assert row.open_until == NOW + timedelta(seconds=30)
    assert (breaker.health(row, NOW), breaker.may_try(row, NOW)) == ("cooling", False)


def test_a_success_in_between_starts_the_count_again() -> None:
    row = _row()
    breaker.failed(row, NOW, RULES)
    breaker.failed(row, NOW, RULES)
    breaker.succeeded(row, NOW)
    breaker.failed(row, NOW, RULES)
    assert (row.failures, row.open_until) == (1, None)


def test_one_probe_after_the_cooldown_and_a_failed_probe_doubles_it() -> None:
    row = _row()
    for _ in range(3):
        breaker.failed(row, NOW, RULES)
    later = NOW + timedelta(seconds=31)
    assert (breaker.health(row, later), breaker.may_try(row, later)) == ("probing", True)
    breaker.start_probe(row, later, RULES)
    assert breaker.may_try(row, later) is False  # the other replicas wait for the probe
    assert breaker.may_try(row, later + timedelta(seconds=61)) is True  # a probe that never reported lapses
    breaker.failed(row, later, RULES)
    assert row.open_until == later + timedelta(seconds=60)
    for _ in range(5):
        breaker.failed(row, later, RULES)
    assert row.open_until == later + timedelta(seconds=100)  # at most max_cooldown


def test_a_good_probe_closes_it() -> None:
    row = _row()
    for _ in range(3):
        breaker.failed(row, NOW, RULES)
    breaker.succeeded(row, NOW + timedelta(seconds=31))
    assert (row.failures, row.open_until, row.probe_until, breaker.health(row, NOW)) == (0, None, None, "healthy")


def test_retry_after_opens_it_at_once() -> None:
    row = _row()
    breaker.failed(row, NOW, RULES, retry_after=7)
    assert (row.failures, row.open_until) == (1, NOW + timedelta(seconds=7))
