"""Reservations on a real ledger (SQLite and PostgreSQL): the limit holds exactly, also when creates race."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets import reservation, store, threshold
from proxy.ledger.models import ApiKey, BudgetEvent, BudgetReservation, Job, WebhookEvent
from proxy.tenancy.keys import create_key

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
USD = 10**12


def _key(sessions: sessionmaker[Session], team: str = "ml") -> ApiKey:
    with sessions.begin() as session:
        key, _ = create_key(session, team=team, name=team)
        return key


def _reserve(sessions: sessionmaker[Session], key: ApiKey, high: int, now: datetime = NOW) -> str | None:
    with sessions.begin() as session:
        held = reservation.reserve(session, team=key.team, key_id=key.id, model="gemini-2.5-flash", high_pico=high,
                                   low_pico=high // 10, project="p", location="us-central1", now=now)
        return held.id if held else None


def _set(sessions: sessionmaker[Session], team: str, usd: str, *, key_id: str | None = None,
         period: str = "month") -> None:
    with sessions.begin() as session:
        store.set_budget(session, actor="test", team=team, key_id=key_id, limit_pico=store.usd_to_pico(usd),
                         period=period, now=NOW)


def _views(sessions: sessionmaker[Session], now: datetime = NOW) -> list[dict[str, object]]:
    with sessions() as session:
        return [status.to_json() for status in store.list_budgets(session, now=now)]


def test_no_budget_no_reservation(sessions: sessionmaker[Session]) -> None:
    assert _reserve(sessions, _key(sessions), 5 * USD) is None


def test_the_team_and_the_key_budget_both_hold(sessions: sessionmaker[Session]) -> None:
    key = _key(sessions)
    _set(sessions, "ml", "10")
    _set(sessions, "ml", "3", key_id=key.id, period="total")
    assert _reserve(sessions, key, 2 * USD) is not None
    with pytest.raises(reservation.BudgetExceeded) as refused:
        _reserve(sessions, key, 2 * USD)  # the key's budget has 1 USD left
    assert str(refused.value) == (f"Budget exhausted: key {key.id} of team ml has 1.00 USD remaining, and this batch "
                                  "is estimated at up to 2.00 USD. Nothing was sent upstream.")
    assert [(v["key_id"], v["limit_usd"], v["spent_usd"], v["reserved_usd"], v["remaining_usd"])
            for v in _views(sessions)] == [(None, "10.00", "0.00", "2.00", "8.00"), (key.id, "3.00", "0.00", "2.00",
                                                                                    "1.00")]


def test_fifty_racing_reservations_fit_exactly_ten(sessions: sessionmaker[Session]) -> None:
    key = _key(sessions)
    _set(sessions, "ml", "10")
    results: list[str] = []
    barrier = threading.Barrier(50)

    def create() -> None:
        barrier.wait()
        try:
            results.append("held" if _reserve(sessions, key, USD) else "none")
        except reservation.BudgetExceeded:
            results.append("refused")
        except Exception as exc:  # "database is locked" or a deadlock would land here
            results.append(f"error: {exc}")

    threads = [threading.Thread(target=create) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == ["held"] * 10 + ["refused"] * 40
    assert _views(sessions)[0]["remaining_usd"] == "0.00"


def test_metering_turns_the_reservation_into_the_cost_and_release_frees_it(sessions: sessionmaker[Session]) -> None:
    key = _key(sessions)
    _set(sessions, "ml", "10")
    bound, released = _reserve(sessions, key, 4 * USD), _reserve(sessions, key, 3 * USD)
    assert bound and released
    with sessions.begin() as session:
        job = Job(name="projects/1/locations/us-central1/batchPredictionJobs/1", job_id="1", key_id=key.id,
                  team="ml", project="p", location="us-central1", api_version="v1", model="m", state="x",
                  create_time=NOW, recorded_at=NOW)
        session.add(job)
        session.flush()
        reservation.bind(session, reservation_id=bound, job=job, now=NOW)
        reservation.release(session, reservation_id=released, now=NOW, note="upstream said no")
        job_pk = job.id
    assert _views(sessions)[0]["reserved_usd"] == "4.00"
    with sessions.begin() as session:
        job = session.get(Job, job_pk)
        assert job is not None
        job.cost_pico, job.cost_status = 1_234_567, "priced"
        session.flush()
        reservation.settle_for_job(session, job_pk=job_pk, cost_pico=1_234_567, cost_status="priced", now=NOW)
    view = _views(sessions)[0]
    assert (view["spent_usd"], view["reserved_usd"], view["remaining_usd"]) == ("0.000001234567", "0.00",
                                                                              "9.999998765433")
    with sessions() as session:
        states = {row[0]: row[1] for row in session.execute(select(BudgetReservation.id, BudgetReservation.state))}
    assert states == {bound: "settled", released: "released"}


def test_the_80_percent_threshold_is_recorded_once_per_month(sessions: sessionmaker[Session]) -> None:
    key = _key(sessions)
    _set(sessions, "ml", "10")
    _reserve(sessions, key, 7 * USD)  # 70%: nothing
    with sessions() as session:
        assert session.scalars(select(BudgetEvent)).all() == []
    _reserve(sessions, key, USD)  # 80%: crossed
    _reserve(sessions, key, USD)  # 90%: already recorded this month
    december = NOW + timedelta(days=20)
    _reserve(sessions, key, 9 * USD, now=december)  # a new month: its own event
    with sessions() as session:
        events = session.scalars(select(BudgetEvent).order_by(BudgetEvent.id)).all()
        assert [(e.kind, e.period_start, e.detail["reserved_usd"]) for e in events] == [
            (threshold.KIND, "2026-11-01", "8.00"), (threshold.KIND, "2026-12-01", "9.00")]
        # each crossing is also one budget.threshold event in the webhooks' outbox, written in its transaction
        outbox = session.scalars(select(WebhookEvent).order_by(WebhookEvent.created_at)).all()
        assert [(e.type, e.team, e.payload["data"]["period_start"], e.payload["data"]["reserved_usd"])
                for e in outbox] == [(threshold.KIND, "ml", "2026-11-01", "8.00"),
                                     (threshold.KIND, "ml", "2026-12-01", "9.00")]


@pytest.mark.parametrize(("usd", "pico"), [("250", 250 * USD), ("0.50", USD // 2), ("0", 0),
                                           ("0.000000000001", 1)])
def test_usd_amounts_are_exact(usd: str, pico: int) -> None:
    assert store.usd_to_pico(usd) == pico


@pytest.mark.parametrize("usd", ["-1", "0.0000000000001", "NaN", "ten"])
def test_bad_amounts_are_refused(usd: str) -> None:
    with pytest.raises(ValueError):
        store.usd_to_pico(usd)
