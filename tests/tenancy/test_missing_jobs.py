"""Another team's job and a missing job take the same path: each costs one ledger lookup, then every later ask is
answered from memory, with the same 404 (only the id differs). Lookups are counted with an event listener on the
replica's own engine."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event

from tests.tenancy.conftest import COLLECTION, Tenancy

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

ASKS = 6


@contextmanager
def job_lookups(engine: Engine, job_id: str) -> Iterator[list[str]]:
    """The SELECTs that carry `job_id` as a parameter, run on `engine` meanwhile."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and job_id in str(parameters):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_a_missing_job_and_another_teams_each_cost_one_lookup(tenancy: Tenancy) -> None:
    theirs = tenancy.create("team-b")["name"]  # through the main proxy: the replica has never seen it
    their_id = theirs.rsplit("/", 1)[-1]
    missing_id = "9" + "".join(secrets.choice("0123456789") for _ in range(18))
    replica = tenancy.replica()
    try:
        assert replica.app.services is not None
        engine = replica.app.services.engine
        client = tenancy.client_for(tenancy.keys["team-a"], proxy=replica)
        before = len(tenancy.emulator_calls())
        bodies = {}
        for job_id in (their_id, missing_id):
            with job_lookups(engine, job_id) as lookups:
                replies = [client.get(f"{COLLECTION}/{job_id}") for _ in range(ASKS)]
            assert len(lookups) == 1, lookups
            assert [r.status_code for r in replies] == [404] * ASKS
            assert len({r.text for r in replies}) == 1
            bodies[job_id] = replies[0].text.replace(job_id, "ID")
        assert bodies[their_id] == bodies[missing_id]
        assert len(tenancy.emulator_calls()) == before
    finally:
        replica.stop()
