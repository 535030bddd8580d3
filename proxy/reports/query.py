"""Cost reports from the ledger: grouping and filtering done in SQL, sums exact on SQLite and PostgreSQL.

What counts (the same for `vbp report`, `GET /v1/costs` and the dashboard):
- A job counts once its metering is done, i.e. it has a figure (`cost_status` is priced, unpriced or
  unmeterable). Tokens and line counts cover every such job; `cost_pico` sums priced jobs only; unpriced
  and unmeterable jobs are counted apart and never as $0. A job being re-priced keeps its current figure.
- Jobs not metered yet (running, or ended and waiting to be metered) are "in flight": left out of the rows
  and totals, and counted in `Report.in_flight` so a report never shows them as $0 spend.
- Dates are UTC and filter on the job's create time over the half-open range [since, until): `--since
  2026-11-01 --until 2026-12-01` is November. `day` is `2026-11-21`, `week` the ISO week `2026-W47`
  (weeks start on Monday; the first week of a year holds its first Thursday), `month` `2026-11`.
- `provider` is the upstream a job ran on (`vertex`, `openai`, `azure`); `deployment` the model catalog's
  deployment it ran on, and "" for a native-door job (which names its project and location, not a deployment).

Exactness: tokens are summed as integers. Cost is kept and summed as two integers, whole micro-dollars and the
remaining picodollars, joined in Python, so SQLite's 64-bit SUM (which raises on overflow rather than wrap)
cannot overflow below 9.2 trillion USD in one group; PostgreSQL's SUM(bigint) is numeric anyway. Weeks are
grouped by day in SQL and folded into ISO weeks here (integer additions), the same way on both databases.

Speed: a report reads `job_rollups` (per-day sums of metered jobs, kept by triggers: migration 0004) unless it
groups by job or its range starts or ends within a day; then it reads every job row (same figures, slower).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import String, case, func, literal_column, select
from sqlalchemy.orm import Session

from proxy.ledger.models import Job, JobMetering, JobRollup
from proxy.metering.progress import Progress
from proxy.providers.vertex.states import TERMINAL_STATES

GROUP_KEYS = ("job", "team", "key", "model", "project", "location", "day", "week", "month", "state", "provider",
              "deployment")
COST_STATUSES = ("priced", "unpriced", "unmeterable")
_SPLIT = 10**6  # cost sums are split at whole micro-dollars (see the module docstring)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ReportError(ValueError):
    """A report option that cannot be honoured (unknown group key, bad date, empty range)."""


@dataclass(frozen=True)
class ReportFilter:
    """Which jobs a report covers: create time in [since, until), and optionally only some teams or models."""

    since: datetime | None = None
    until: datetime | None = None
    teams: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ReportError("report dates must carry a time zone (UTC)")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ReportError(f"--since {self.since:%Y-%m-%d %H:%M:%S} is not before --until "
                              f"{self.until:%Y-%m-%d %H:%M:%S}: the range [since, until) is empty")


@dataclass
class Figures:
    """The sums of one group (or of the whole report)."""

    jobs: int = 0
    cost_pico: int = 0
    prompt: int = 0
    cached: int = 0
    candidates: int = 0
    thoughts: int = 0
    tool_use_prompt: int = 0
    succeeded: int = 0
    failed: int = 0
    malformed: int = 0
    unpriced_jobs: int = 0
    unmeterable_jobs: int = 0

    @property
    def priced_jobs(self) -> int:
        return self.jobs - self.unpriced_jobs - self.unmeterable_jobs

    def add(self, other: Figures) -> None:
        """Add another group's sums into this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Row:
    """One group: its key values (in `by` order; None where the ledger has no value) and its sums."""

    key: tuple[str | None, ...]
    figures: Figures


@dataclass
class Report:
    """A grouped report: its rows in key order, their totals, and how many jobs in range are still in flight."""

    by: tuple[str, ...]
    filter: ReportFilter
    rows: list[Row] = field(default_factory=list)
    totals: Figures = field(default_factory=Figures)
    in_flight: int = 0  # jobs in range without a figure yet: not in rows or totals


def parse_by(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`team,model` (or a list of such parts) -> ('team', 'model'); unknown or repeated keys are refused."""
    parts = [text] if isinstance(text, str) else list(text or [])
    keys = [p.strip() for part in parts for p in part.split(",") if p.strip()]
    unknown = [k if len(k) <= 40 else k[:40] + "..." for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise ReportError(f"unknown grouping {', '.join(unknown[:5])!s}: use any of {','.join(GROUP_KEYS)}")
    if len(set(keys)) != len(keys):
        raise ReportError(f"a grouping key is repeated in {','.join(keys)}")
    return tuple(keys)


def parse_moment(text: str | None) -> datetime | None:
    """`YYYY-MM-DD` (midnight UTC) or an ISO 8601 / RFC 3339 time (no zone means UTC); None or '' -> None."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    shown = value if len(value) <= 40 else value[:40] + "..."
    try:
        if _DATE.fullmatch(value):
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        raise ReportError(f"{shown!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    except OverflowError:  # 0001-01-01T00:00+01:00 is a moment before the first one a datetime can hold in UTC
        raise ReportError(f"{shown!r} is out of the range of dates in UTC") from None


def _job_day(dialect: str) -> Any:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", Job.create_time), "YYYY-MM-DD", type_=String)
    # SQLite keeps UtcDateTime as text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC: a day is its first 10 characters
    return func.substr(Job.create_time, 1, 10, type_=String)


def _job_group(key: str, dialect: str) -> Any:
    """A grouping key over the jobs table (`week` is grouped by day, then folded: see `_fold_weeks`)."""
    simple: dict[str, Any] = {
        # an OpenAI-door batch's job is named by its batch id; a native job by its Vertex name
        "job": func.coalesce(Job.batch_id, Job.name, type_=String), "team": Job.team, "key": Job.key_id,
        "project": Job.project, "location": Job.location,
        "state": Job.state, "model": func.coalesce(Job.model_id, Job.model, type_=String),
        "provider": Job.provider, "deployment": func.coalesce(Job.deployment, "", type_=String),
    }
    if key in simple:
        return simple[key]
    if key == "month":
        return func.substr(_job_day(dialect), 1, 7, type_=String)
    return _job_day(dialect)


def _rollup_group(key: str) -> Any:
    """A grouping key over the rollup (which has no `job`; `week` is grouped by day, then folded)."""
    simple: dict[str, Any] = {
        "team": JobRollup.team, "key": func.nullif(JobRollup.key_id, "", type_=String), "model": JobRollup.model,
        "project": JobRollup.project, "location": JobRollup.location, "state": JobRollup.state,
        "provider": JobRollup.provider, "deployment": JobRollup.deployment,
    }
    if key in simple:
        return simple[key]
    if key == "month":
        return func.substr(JobRollup.day, 1, 7, type_=String)
    return JobRollup.day


def iso_week(day: str) -> str:
    """'2027-01-01' -> '2026-W53': the ISO 8601 week (Monday to Sunday; week 1 holds the year's first Thursday)."""
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _where_jobs(query: Any, filter: ReportFilter) -> Any:
    if filter.since is not None:
        query = query.where(Job.create_time >= filter.since)
    if filter.until is not None:
        query = query.where(Job.create_time < filter.until)
    if filter.teams:
        query = query.where(Job.team.in_(filter.teams))
    if filter.models:
        query = query.where(func.coalesce(Job.model_id, Job.model).in_(filter.models))
    return query


def _where_rollup(query: Any, filter: ReportFilter) -> Any:
    if filter.since is not None:
        query = query.where(JobRollup.day >= filter.since.strftime("%Y-%m-%d"))
    if filter.until is not None:
        query = query.where(JobRollup.day < filter.until.strftime("%Y-%m-%d"))
    if filter.teams:
        query = query.where(JobRollup.team.in_(filter.teams))
    if filter.models:
        query = query.where(JobRollup.model.in_(filter.models))
    return query


def _sum(column: Any) -> Any:
    return func.coalesce(func.sum(column), 0)


def _job_measures() -> list[Any]:
    priced = Job.cost_status == "priced"
    cost = func.coalesce(Job.cost_pico, 0)
    return [
        func.count(),
        _sum(case((priced, cost // _SPLIT), else_=0)),
        _sum(case((priced, cost % _SPLIT), else_=0)),
        _sum(Job.prompt_tokens), _sum(Job.cached_tokens), _sum(Job.candidates_tokens), _sum(Job.thoughts_tokens),
        _sum(Job.tool_use_prompt_tokens), _sum(Job.lines_succeeded), _sum(Job.lines_failed),
        _sum(Job.lines_malformed),
        _sum(case((Job.cost_status == "unpriced", 1), else_=0)),
        _sum(case((Job.cost_status == "unmeterable", 1), else_=0)),
    ]


def _rollup_measures() -> list[Any]:
    r = JobRollup
    return [
        _sum(r.jobs), _sum(r.cost_micro), _sum(r.cost_pico_rest),
        _sum(r.prompt_tokens), _sum(r.cached_tokens), _sum(r.candidates_tokens), _sum(r.thoughts_tokens),
        _sum(r.tool_use_prompt_tokens), _sum(r.lines_succeeded), _sum(r.lines_failed), _sum(r.lines_malformed),
        _sum(case((r.cost_status == "unpriced", r.jobs), else_=0)),
        _sum(case((r.cost_status == "unmeterable", r.jobs), else_=0)),
    ]


def _figures(values: Sequence[Any]) -> Figures:
    # PostgreSQL answers numeric sums as Decimal: int() of an integral Decimal is exact.
    n = [int(v) for v in values]
    return Figures(jobs=n[0], cost_pico=n[1] * _SPLIT + n[2], prompt=n[3], cached=n[4], candidates=n[5],
                   thoughts=n[6], tool_use_prompt=n[7], succeeded=n[8], failed=n[9], malformed=n[10],
                   unpriced_jobs=n[11], unmeterable_jobs=n[12])


def _sort_key(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, value or "") for value in key)


def _at_midnight(moment: datetime | None) -> bool:
    return moment is None or moment.astimezone(UTC).time() == time()


def can_use_rollup(by: Sequence[str], filter: ReportFilter) -> bool:
    """The rollup answers any grouping but `job`, over whole UTC days."""
    return "job" not in by and _at_midnight(filter.since) and _at_midnight(filter.until)


def run_report(session: Session, *, by: Sequence[str], filter: ReportFilter | None = None,
               source: str | None = None) -> Report:
    """Group the metered jobs that match `filter` by `by` (no keys: one row of everything).

    `source` is "rollup" (per-day sums, fast), "jobs" (every job row) or None: the rollup whenever it can answer.
    Both give the same figures.
    """
    filter = filter or ReportFilter()
    by = parse_by(list(by))
    source = source or ("rollup" if can_use_rollup(by, filter) else "jobs")
    if source == "rollup" and not can_use_rollup(by, filter):
        raise ReportError("the rollup cannot group by job or filter on times within a day")
    if source == "rollup":
        groups = [_rollup_group(key).label(f"g{i}") for i, key in enumerate(by)]
        query = _where_rollup(select(*groups, *_rollup_measures()).select_from(JobRollup), filter)
    else:
        dialect = session.get_bind().dialect.name
        groups = [_job_group(key, dialect).label(f"g{i}") for i, key in enumerate(by)]
        query = _where_jobs(select(*groups, *_job_measures()), filter).where(Job.cost_status.in_(COST_STATUSES))
    if groups:
        # by label: PostgreSQL would not match a to_char(...) in GROUP BY whose pattern is a separate parameter
        query = query.group_by(*[literal_column(g.name) for g in groups])
    weeks = [i for i, key in enumerate(by) if key == "week"]
    merged: dict[tuple[str | None, ...], Figures] = {}
    for values in session.execute(query):
        figures = _figures(values[len(groups):])
        if figures.jobs == 0:
            continue  # an aggregate without GROUP BY answers one row even when nothing matched
        key = [None if v is None else str(v) for v in values[:len(groups)]]
        for i in weeks:  # grouped by day in SQL (cheap and the same on both databases); a week is 7 of them
            key[i] = iso_week(str(key[i]))
        if tuple(key) in merged:
            merged[tuple(key)].add(figures)
        else:
            merged[tuple(key)] = figures
    report = Report(by=by, filter=filter)
    report.rows = [Row(key, figures) for key, figures in sorted(merged.items(), key=lambda item: _sort_key(item[0]))]
    for row in report.rows:
        report.totals.add(row.figures)
    report.in_flight = in_flight_count(session, filter=filter)
    return report


def in_flight_count(session: Session, *, filter: ReportFilter) -> int:
    """Jobs in range that have no figure yet (still running, or ended and waiting to be metered)."""
    query = _where_jobs(select(func.count()).select_from(Job), filter).where(Job.cost_status.is_(None))
    return int(session.scalar(query) or 0)


@dataclass(frozen=True)
class JobLine:
    """One job as the dashboard and the report's notes list it."""

    name: str
    team: str
    model: str
    state: str
    create_time: datetime
    cost_status: str | None
    progress: Progress  # where it stands if it has no figure yet (why, and when it is looked at again)
    note: str | None = None  # why its figure is what it is: settled with no output, unpriced, unmeterable


def _job_lines(session: Session, query: Any, *, limit: int, where: Any = None) -> list[JobLine]:
    """Run a `select(Job)...` and return its newest `limit` jobs as lines, with their current metering's note
    (`where` may name `JobMetering`: it applies after the join)."""
    query = query.outerjoin(JobMetering, (JobMetering.job_pk == Job.id) & JobMetering.superseded_at.is_(None))
    if where is not None:
        query = query.where(where)
    query = query.add_columns(JobMetering.note).order_by(Job.create_time.desc(), Job.id.desc()).limit(limit)
    return [JobLine(job.name, job.team, job.model_id or job.model, job.state, job.create_time, job.cost_status,
                    Progress.of(job), note) for job, note in session.execute(query)]


def list_jobs(session: Session, *, filter: ReportFilter, cost_statuses: Iterable[str | None],
              limit: int = 50) -> list[JobLine]:
    """The newest jobs in range with one of `cost_statuses` (None: not metered yet)."""
    statuses = list(cost_statuses)
    named = [s for s in statuses if s is not None]
    condition: Any = Job.cost_status.in_(named)
    if None in statuses:
        condition = condition | Job.cost_status.is_(None)
    return _job_lines(session, _where_jobs(select(Job), filter).where(condition), limit=limit)


_TERMINAL = [state.name for state in TERMINAL_STATES]


def _waiting() -> Any:
    """Jobs in flight that have ended (their metering waits for a retry, or a process holds them)."""
    return Job.cost_status.is_(None) & (Job.metering_state.is_not(None) | Job.state.in_(_TERMINAL))


def _settled_with_no_output() -> Any:
    """Jobs settled at 0 lines and no cost because they ended without any output (a priced figure with a note)."""
    return (Job.cost_status == "priced") & JobMetering.note.is_not(None)


@dataclass
class ReportDetails:
    """What the table's notes say beyond the figures: the jobs in flight split into running and waiting (with the
    first waiting ones and why), and the jobs that ended with no output (with the reason)."""

    running: int = 0
    waiting: int = 0
    waiting_jobs: list[JobLine] = field(default_factory=list)
    no_output: int = 0
    no_output_jobs: list[JobLine] = field(default_factory=list)


def report_details(session: Session, *, filter: ReportFilter, limit: int = 5) -> ReportDetails:
    """The notes' figures and examples (a few indexed queries; not part of `run_report`, which stays lean)."""
    in_flight = _where_jobs(select(func.count()).select_from(Job), filter).where(Job.cost_status.is_(None))
    waiting = int(session.scalar(in_flight.where(_waiting())) or 0)
    running = int(session.scalar(in_flight) or 0) - waiting
    current = (JobMetering.job_pk == Job.id) & JobMetering.superseded_at.is_(None)
    no_output = _where_jobs(select(func.count()).select_from(Job).join(JobMetering, current), filter)
    return ReportDetails(
        running=running, waiting=waiting,
        waiting_jobs=_job_lines(session, _where_jobs(select(Job), filter).where(_waiting()), limit=limit),
        no_output=int(session.scalar(no_output.where(_settled_with_no_output())) or 0),
        no_output_jobs=list_no_output(session, filter=filter, limit=limit),
    )


def list_no_output(session: Session, *, filter: ReportFilter, limit: int = 50) -> list[JobLine]:
    """The newest jobs in range that ended with no output (0 lines, nothing billed), with the reason."""
    return _job_lines(session, _where_jobs(select(Job), filter), limit=limit, where=_settled_with_no_output())
