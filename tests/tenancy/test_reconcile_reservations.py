"""Reconciliation and budget reservations: a reservation written by a create that died is bound to the job the
upstream made for it (found by its `vbp-reservation` label), or released once older than VBP_RESERVATION_GRACE
when a listing of its pair shows no job carrying it; never released on a listing that failed.

Each test holds a reservation as a create does (the same `reserve` call, its own team and budget), then makes the
upstream job, or none, as the dead create would have left it.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from proxy.budgets import reservation, store
from proxy.cli import cli
from proxy.clock import utcnow
from proxy.ledger.models import BudgetReservation, Job
from tests.tenancy.conftest import ALIAS, LOCATION, REAL_PROJECT, Tenancy, reconcile, unique

# Runs the emulator and a proxy: left out of `make test-fast`.
pytestmark = pytest.mark.slow

AMOUNT = 12_950_000  # pUSD
RELEASED_NOTE = "no job was recorded or found upstream for this create"


def hold(tenancy: Tenancy) -> tuple[str, str, str]:
    """A new team with a budget and a key, and a reservation held for it in the tenancy pair: (team, key, id)."""
    team = unique("budget")
    key_id, _ = tenancy.new_key(team)
    with tenancy.sessions.begin() as session:
        store.set_budget(session, actor="test", team=team, key_id=None, limit_pico=10 * AMOUNT, period="month",
                         now=utcnow())
    with tenancy.sessions.begin() as session:  # a reservation starts its own transaction, as a create's does
        held = reservation.reserve(session, team=team, key_id=key_id, model="gemini-2.5-flash", high_pico=AMOUNT,
                                   low_pico=1, project=REAL_PROJECT, location=LOCATION, now=utcnow())
        assert held is not None
        return team, key_id, held.id


def state_of(tenancy: Tenancy, reservation_id: str) -> tuple[str, int | None, str, int]:
    """The reservation's state, job, note, and what its team's budget has reserved."""
    with tenancy.sessions() as session:
        row = session.get(BudgetReservation, reservation_id)
        assert row is not None
        [budget] = store.list_budgets(session, now=utcnow(), team=row.team)
        return row.state, row.job_pk, row.note, budget.reserved


def job_pk(tenancy: Tenancy, name: str) -> int:
    with tenancy.sessions() as session:
        return session.scalars(select(Job.id).where(Job.name == name)).one()


def test_an_adopted_job_binds_the_reservation_its_create_held_even_past_the_grace(tenancy: Tenancy) -> None:
    team, key_id, held = hold(tenancy)
    job = tenancy.create_outside(unique("died"), {"vbp-team": team, "vbp-key": key_id, "vbp-reservation": held})
    outcomes = [o for o in reconcile(tenancy, "--min-age", "0s", VBP_RESERVATION_GRACE="0") if o["team"] == team]
    assert outcomes == [{"name": job["name"], "result": "adopted", "team": team, "key_id": key_id}]
    assert state_of(tenancy, held) == ("bound", job_pk(tenancy, job["name"]), "", AMOUNT)


def test_an_orphaned_reservation_is_released_after_the_grace_and_not_before(tenancy: Tenancy) -> None:
    _, _, held = hold(tenancy)
    reconcile(tenancy, "--min-age", "0s")  # the default grace (15 minutes): the create may still be running
    assert state_of(tenancy, held) == ("held", None, "", AMOUNT)
    reconcile(tenancy, "--min-age", "0s", VBP_RESERVATION_GRACE="0")
    assert state_of(tenancy, held) == ("released", None, RELEASED_NOTE, 0)


def test_a_released_reservation_is_bound_again_when_its_job_turns_up(tenancy: Tenancy) -> None:
    """A create slower than the grace: its job reaches the upstream after reconciliation gave up on it."""
    team, key_id, held = hold(tenancy)
    reconcile(tenancy, "--min-age", "0s", VBP_RESERVATION_GRACE="0")
    assert state_of(tenancy, held)[0] == "released"
    job = tenancy.create_outside(unique("late"), {"vbp-team": team, "vbp-key": key_id, "vbp-reservation": held})
    assert [o["result"] for o in reconcile(tenancy, "--min-age", "0s") if o["team"] == team] == ["adopted"]
    assert state_of(tenancy, held) == ("bound", job_pk(tenancy, job["name"]), "", AMOUNT)


def test_a_reservation_is_kept_when_its_pair_cannot_be_listed(tenancy: Tenancy,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    _, _, held = hold(tenancy)
    tenancy.stack.set_faults(errors=[{"status": 503, "method": "list", "rate": 1.0}])
    try:
        result = CliRunner().invoke(cli, ["reconcile", "--min-age", "0s"], env={
            "VBP_DATABASE_URL": tenancy.database_url, "VBP_PROJECT_ALIASES": f"{ALIAS}={REAL_PROJECT}",
            "VBP_RESERVATION_GRACE": "0", "VBP_RETRY_ATTEMPTS": "1"})
    finally:
        tenancy.stack.set_faults()
    assert result.exit_code == 1, result.output  # a listing that broke off may hide a job: a script must retry
    pair = f"{REAL_PROJECT}/{LOCATION}"
    assert (f"Error: could not list every job of {pair}: the list of {pair} answered 503; run `vbp reconcile` "
            "again") in result.stderr.splitlines()  # (and of every other pair the shared ledger knows)
    assert (f"reconciliation: the list of {REAL_PROJECT}/{LOCATION} answered 503; no reservation released there "
            "this pass") in caplog.messages
    assert state_of(tenancy, held) == ("held", None, "", AMOUNT)
