"""Reports over the real-job ledger: every figure against independent sums, on SQLite and on PostgreSQL, from the
rollup and from the job rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import ApiKey, Job, JobRollup
from proxy.reports.query import ReportError, ReportFilter, parse_by, parse_moment, run_report
from proxy.reports.render import to_document
from tests.reports.conftest import UNPRICED_MODEL, JobFacts, Ledger, expected_report
from tests.support.postgres import LocalPostgres

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

GROUPINGS = [(), ("team",), ("team", "model"), ("key",), ("model",), ("project", "location"), ("state",), ("day",),
             ("week",), ("month",), ("job",), ("team", "model", "month"), ("week", "team"), ("location", "key", "day")]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def report_sessions(request: pytest.FixtureRequest, ledger: Ledger) -> Iterator[sessionmaker[Session]]:
    """The ledger itself (SQLite), or a copy of its rows on PostgreSQL (the triggers rebuild the rollup there)."""
    if request.param == "sqlite":
        yield ledger.sessions
        return
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    url = server.create_database("reports_copy")
    upgrade(url)
    engine = make_engine(url)
    with ledger.sessions() as source, engine.begin() as target:
        for model in (ApiKey, Job):
            rows = [dict(r._mapping) for r in source.execute(select(model.__table__))]
            target.execute(model.__table__.insert(), rows)
    yield make_sessionmaker(engine)
    engine.dispose()


def report(sessions: sessionmaker[Session], by: tuple[str, ...], source: str | None = None,
           **filters: object) -> dict[str, object]:
    with sessions() as session:
        return to_document(run_report(session, by=by, filter=ReportFilter(**filters), source=source))  # type: ignore[arg-type]


@pytest.mark.parametrize("by", GROUPINGS, ids=lambda by: ",".join(by) or "none")
def test_every_grouping_matches_independent_sums(report_sessions: sessionmaker[Session], ledger: Ledger,
                                                 by: tuple[str, ...]) -> None:
    want = expected_report(ledger.jobs, by)
    assert report(report_sessions, by) == want
    if "job" not in by:
        assert report(report_sessions, by, source="jobs") == want  # the rollup and the job rows agree


def test_the_ledger_exercises_what_it_claims(ledger: Ledger) -> None:
    totals = expected_report(ledger.jobs, ())["totals"]
    assert totals["jobs"] == 8 and totals["unpriced_jobs"] == 1 and totals["unmeterable_jobs"] == 1
    assert totals["lines"]["failed"] == 3  # half of the flash-lite job's 6 rows
    assert all(j.cost_pico > 0 for j in ledger.jobs if j.cost_status == "priced" and j.state.endswith("SUCCEEDED"))
    assert totals["tokens"]["cached"] > 0 and totals["tokens"]["thoughts"] > 0
    unpriced = next(j for j in ledger.jobs if j.model == UNPRICED_MODEL)
    assert unpriced.tokens["prompt"] > 0  # counted in tokens, never in cost
    weeks = {row["week"] for row in expected_report(ledger.jobs, ("week",))["rows"]}
    assert weeks >= {"2026-W01", "2026-W13", "2026-W14", "2026-W53", "2027-W01"}


@pytest.mark.parametrize(("since", "until", "source"), [
    ("2026-03-30", "2027-01-01", None),            # whole days: the rollup
    ("2026-03-30", "2027-01-01", "jobs"),
    ("2026-03-29T23:59:59.999999Z", "2027-01-01T00:00:00.000001Z", None),   # within a day: the job rows
    ("2026-03-29T23:59:59.999999", "2027-01-01", None),                    # no zone means UTC
    (None, "2026-03-30", None),
    ("2027-01-01", None, None),
])
def test_ranges_are_half_open_and_utc(report_sessions: sessionmaker[Session], ledger: Ledger, since: str | None,
                                      until: str | None, source: str | None) -> None:
    start, end = parse_moment(since), parse_moment(until)

    def inside(job: JobFacts) -> bool:
        return (start is None or job.created >= start) and (end is None or job.created < end)

    for by in [("team", "model"), ("day",)]:
        want = expected_report(ledger.jobs, by, inside)
        assert report(report_sessions, by, source, since=start, until=end) == want
        assert want["rows"]  # each range holds jobs


def test_team_and_model_filters(report_sessions: sessionmaker[Session], ledger: Ledger) -> None:
    want = expected_report(ledger.jobs, ("model", "key"), lambda j: j.team == "team-a")
    assert report(report_sessions, ("model", "key"), teams=("team-a",)) == want
    flash = ("gemini-2.5-flash", "gemini-2.0-flash")
    want = expected_report(ledger.jobs, ("team",), lambda j: j.model in flash)
    assert report(report_sessions, ("team",), models=flash) == want
    assert report(report_sessions, ("team",), teams=("nobody",)) == expected_report([], (), in_flight=())


def test_jobs_in_flight_are_counted_apart_never_as_spend(report_sessions: sessionmaker[Session],
                                                         ledger: Ledger) -> None:
    with report_sessions() as session:
        everything = run_report(session, by=("job",))
        assert ledger.in_flight not in {row.key[0] for row in everything.rows}
        assert everything.in_flight == 1
        assert run_report(session, by=(), filter=ReportFilter(since=parse_moment("2026-11-04"),
                                                              until=parse_moment("2026-11-05"))).in_flight == 1
        assert run_report(session, by=(), filter=ReportFilter(teams=("team-b",))).in_flight == 0
        job = session.scalars(select(Job).where(Job.name == ledger.in_flight)).one()
        assert job.cost_status is None and job.metering_state is None


def test_the_rollup_holds_exactly_the_metered_jobs(report_sessions: sessionmaker[Session], ledger: Ledger) -> None:
    with report_sessions() as session:
        rollup = session.scalars(select(JobRollup)).all()
    assert sum(r.jobs for r in rollup) == len(ledger.jobs)
    assert {r.day for r in rollup} == {j.created.date().isoformat() for j in ledger.jobs}


def test_bad_options_are_refused() -> None:
    with pytest.raises(ReportError, match="unknown grouping"):
        parse_by("team,colour")
    with pytest.raises(ReportError, match="repeated"):
        parse_by("team,team")
    with pytest.raises(ReportError, match="not a date"):
        parse_moment("yesterday")
    with pytest.raises(ReportError, match="empty"):
        ReportFilter(since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC))
    assert parse_moment("2026-11-21") == datetime(2026, 11, 21, tzinfo=UTC)
    assert parse_moment("2026-11-21T10:00:00+02:00") == datetime(2026, 11, 21, 8, tzinfo=UTC)
