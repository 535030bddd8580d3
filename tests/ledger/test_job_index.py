"""The job index remembers misses too (for MISS_SECONDS, per set of project names) and forgets one as soon as the
job is recorded, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger import jobs as ledger
from proxy.ledger.job_index import JobIndex
from proxy.tenancy.keys import Principal, create_key
from tests.ledger.test_ledger import REPLY, REQUEST

JOB_ID, LOCATION = "3814889423749775360", "us-central1"


@contextmanager
def queries(sessions: sessionmaker[Session]) -> Iterator[list[str]]:
    """Every statement the engine runs meanwhile (observed with an event listener)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_a_miss_is_remembered_until_the_job_is_recorded(sessions: sessionmaker[Session]) -> None:
    index = JobIndex(sessions, miss_seconds=3600)
    where = {"location": LOCATION, "job_id": JOB_ID, "projects": ("p1",)}
    assert index.cached_for(**where) == (False, None)
    with queries(sessions) as seen:
        assert index.load(**where) is None
    assert len(seen) == 1
    with queries(sessions) as seen:
        assert index.cached_for(**where) == (True, None)
        assert index.cached_for(location=LOCATION, job_id=JOB_ID, projects=("p2",)) == (False, None)  # its own
    assert seen == []
    with sessions.begin() as session:  # recorded, as a create does
        key, _ = create_key(session, team="a")
        job = ledger.record_created(session, reply=REPLY, request=REQUEST, principal=Principal(key.id, "a"),
                                    api_version="v1", project="p1", location=LOCATION)
        index.remember(job)
    known, ref = index.cached_for(**where)
    assert known and ref is not None and (ref.team, ref.name) == ("a", REPLY["name"])


def test_a_miss_lapses_after_miss_seconds(sessions: sessionmaker[Session]) -> None:
    index = JobIndex(sessions, miss_seconds=0.2)
    where = {"location": LOCATION, "job_id": JOB_ID, "projects": ("p1",)}
    assert index.load(**where) is None
    assert index.cached_for(**where) == (True, None)
    time.sleep(0.3)
    assert index.cached_for(**where) == (False, None)
