"""The rollup behind fast reports: kept exact by triggers through inserts, re-pricing, moves and deletes; ISO weeks
at year edges; sums past 64 bits. On a fresh ledger built by the migrations, SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.engine import alembic_config, upgrade
from proxy.ledger.models import Job, JobRollup
from proxy.money import format_usd
from proxy.reports.query import GROUP_KEYS, ReportFilter, run_report
from proxy.reports.render import to_document

_ids = itertools.count(1)
INT64_MAX = 2**63 - 1


def add_job(session: Session, *, created: datetime, team: str = "team-a", model: str = "gemini-2.5-flash",
            cost_status: str | None = "priced", cost_pico: int | None = 1_000_000, **figures: Any) -> Job:
    n = next(_ids)
    job = Job(name=f"projects/1/locations/us-central1/batchPredictionJobs/{n}", job_id=str(n), team=team,
              project="p", location="us-central1", api_version="v1", model=f"publishers/google/models/{model}",
              model_id=model, state="JOB_STATE_SUCCEEDED", create_time=created, recorded_at=created,
              cost_status=cost_status, cost_pico=cost_pico if cost_status == "priced" else None,
              metering_state="metered" if cost_status else None, **figures)
    session.add(job)
    session.flush()
    return job


def both_sources_agree(sessions: sessionmaker[Session], by: tuple[str, ...], **filters: Any) -> dict[str, Any]:
    with sessions() as session:
        chosen = ReportFilter(**filters)
        rollup = to_document(run_report(session, by=by, filter=chosen, source="rollup"))
        jobs = to_document(run_report(session, by=by, filter=chosen, source="jobs"))
    assert rollup == jobs
    return rollup


def test_iso_weeks_months_and_days_at_year_edges(sessions: sessionmaker[Session]) -> None:
    days = [date(2020, 12, 25) + timedelta(days=i) for i in range(20)]
    days += [date(2026, 12, 24) + timedelta(days=i) for i in range(16)] + [date(2024, 12, 30), date(2021, 1, 3)]
    with sessions.begin() as session:
        for day in days:
            add_job(session, created=datetime.combine(day, datetime.max.time(), UTC))  # 23:59:59.999999
    want: dict[str, int] = {}
    for day in days:
        year, week, _ = day.isocalendar()
        want[f"{year}-W{week:02d}"] = want.get(f"{year}-W{week:02d}", 0) + 1
    weeks = both_sources_agree(sessions, ("week",))
    assert {row["week"]: row["jobs"] for row in weeks["rows"]} == want
    assert {"2020-W53", "2021-W01", "2026-W53", "2027-W01", "2025-W01"} <= set(want)
    months = both_sources_agree(sessions, ("month", "day"))
    assert [(r["month"], r["day"]) for r in months["rows"]] == sorted(
        {(f"{d.year}-{d.month:02d}", d.isoformat()) for d in days})


def test_sums_past_64_bits_stay_exact(sessions: sessionmaker[Session]) -> None:
    # three jobs of 4,000,000 USD each: their picodollar sum is past the largest 64-bit integer
    big = 4 * 10**18
    created = datetime(2026, 5, 1, 12, tzinfo=UTC)
    with sessions.begin() as session:
        for _ in range(3):
            add_job(session, created=created, cost_pico=big, prompt_tokens=10**15)
        add_job(session, created=created, cost_pico=123_456_789)
    assert 3 * big > INT64_MAX
    document = both_sources_agree(sessions, ("team",))
    assert document["totals"]["cost_usd"] == format_usd(3 * big + 123_456_789) == "12000000.000123456789"
    assert document["totals"]["tokens"]["prompt"] == 3 * 10**15


def test_triggers_follow_every_change_of_a_metered_job(sessions: sessionmaker[Session]) -> None:
    day1, day2 = datetime(2026, 6, 1, 9, tzinfo=UTC), datetime(2026, 6, 2, 9, tzinfo=UTC)
    with sessions.begin() as session:
        first = add_job(session, created=day1, cost_pico=727_000_000, prompt_tokens=1000, cached_tokens=400,
                        candidates_tokens=200, thoughts_tokens=300, tool_use_prompt_tokens=7, lines_succeeded=1)
        second = add_job(session, created=day1, cost_pico=5, lines_failed=2, lines_malformed=1)
        running = add_job(session, created=day1, cost_status=None)
        pk1, pk2, pk3 = first.id, second.id, running.id
    groupings = [tuple(k for k in GROUP_KEYS if k != "job"), ("team", "model"), ("day",), ()]

    def check(jobs: int, cost: str) -> None:
        for by in groupings:
            document = both_sources_agree(sessions, by)
        assert (document["totals"]["jobs"], document["totals"]["cost_usd"]) == (jobs, cost)
        with sessions() as session:  # no empty rows are left behind
            assert all(r.jobs > 0 for r in session.scalars(select(JobRollup)))

    check(2, "0.000727000005")
    steps: list[tuple[Any, int, str]] = [
        # re-priced: unpriced, then priced again with another figure
        (update(Job).where(Job.id == pk1).values(cost_status="unpriced", cost_pico=None), 2, "0.000000000005"),
        (update(Job).where(Job.id == pk1).values(cost_status="priced", cost_pico=10**12), 2, "1.000000000005"),
        # moved to another team, model and day; its state changes
        (update(Job).where(Job.id == pk2).values(team="team-b", model_id="gemini-2.5-pro", create_time=day2,
                                                 state="JOB_STATE_PARTIALLY_SUCCEEDED"), 2, "1.000000000005"),
        # the running job ends and is metered; then found unmeterable
        (update(Job).where(Job.id == pk3).values(cost_status="priced", cost_pico=2, metering_state="metered",
                                                 candidates_tokens=9), 3, "1.000000000007"),
        (update(Job).where(Job.id == pk3).values(cost_status="unmeterable", cost_pico=None), 3, "1.000000000005"),
        # changes to columns the rollup does not hold leave it alone
        (update(Job).where(Job.id == pk1).values(next_poll_at=day2, metering_state="due"), 3, "1.000000000005"),
        (delete(Job).where(Job.id == pk2), 2, "1.00"),
        (delete(Job).where(Job.id == pk1), 1, "0.00"),
    ]
    for statement, jobs, cost in steps:
        with sessions.begin() as session:
            session.execute(statement)
        check(jobs, cost)
    with sessions() as session:
        [row] = session.scalars(select(JobRollup)).all()
    assert (row.cost_status, row.jobs, row.candidates_tokens, row.key_id) == ("unmeterable", 1, 9, "")


def test_upgrading_a_ledger_that_has_jobs_fills_the_rollup(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for i in range(6):
            add_job(session, created=datetime(2026, 1, 1 + i % 3, i, tzinfo=UTC), team=f"team-{i % 2}",
                    cost_pico=10**12 + i, prompt_tokens=i, cost_status=("priced", "unpriced", None)[i % 3])
    before = both_sources_agree(sessions, ("team", "day"))
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    command.downgrade(alembic_config(url), "0003")  # the ledger as it was before the rollup
    upgrade(url)
    after = both_sources_agree(sessions, ("team", "day"))
    assert after == before and after["totals"]["jobs"] == 4 and after["totals"]["cost_usd"] == "2.000000000003"


def test_the_triggers_exist_at_head(sessions: sessionmaker[Session]) -> None:
    """A later migration that rebuilds `jobs` on SQLite drops its triggers: this fails until it recreates them."""
    with sessions() as session:
        engine = session.get_bind()
        if engine.dialect.name == "postgresql":
            names = set(session.scalars(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass "
                                             "AND NOT tgisinternal")))
        else:
            names = set(session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                             "AND tbl_name = 'jobs'")))
        assert {"job_rollups_insert", "job_rollups_update", "job_rollups_delete"} <= names
        assert "job_rollups" in inspect(engine).get_table_names()
