"""Cost report speed: `vbp report --by team,model,month` over a ledger of 1,000,000 jobs, SQLite and PostgreSQL.

    PYTHONPATH=. .venv/bin/python -m bench.report [--jobs 1000000] [--by team,model,month] [--only sqlite|postgres]

The ledger is built by the migrations, then filled in bulk with rows shaped like real ones (20 teams of two keys,
one project and home region each, 8 models, a year of create times; 1% in flight, 0.5% unmeterable, the
unpriced model's 2% unpriced): executemany on SQLite, with the rollup triggers firing as in production; COPY on
PostgreSQL with row triggers off, the rollup then built in one statement as migration 0004 builds it for existing
jobs. The timed part is what `vbp report` does once connected: the grouping query, the in-flight count and
rendering the table. Target: under 1 second on each database. The totals are checked against sums kept while
generating, and against the same report computed from every job row (timed once, to show what the rollup saves).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.money import format_usd
from proxy.reports.query import ReportFilter, parse_by, run_report
from proxy.reports.render import render
from proxy.settings import shipped

TARGET_SECONDS = 1.0
TEAMS = [f"team-{i:02d}" for i in range(20)]
KEYS_PER_TEAM = 2
# (model, share of jobs, pUSD per uncached input, cached input and output token at batch rates; None: unpriced)
MODELS: list[tuple[str, float, tuple[int, int, int] | None]] = [
    ("gemini-2.5-flash", 0.40, (150_000, 30_000, 1_250_000)),
    ("gemini-2.5-flash-lite", 0.25, (50_000, 10_000, 200_000)),
    ("gemini-2.5-pro", 0.15, (625_000, 125_000, 5_000_000)),
    ("gemini-2.0-flash", 0.08, (75_000, 75_000, 300_000)),
    ("gemini-2.0-flash-lite", 0.04, (37_500, 37_500, 150_000)),
    ("gemini-embedding-001", 0.04, (120_000, 120_000, 0)),
    ("text-embedding-005", 0.02, (25_000, 25_000, 0)),
    ("gemini-9.9-custom", 0.02, None),
]
# Ended states of metered jobs, and the states of jobs still in flight.
STATES = [("JOB_STATE_SUCCEEDED", 0.94), ("JOB_STATE_FAILED", 0.03), ("JOB_STATE_CANCELLED", 0.02),
          ("JOB_STATE_PARTIALLY_SUCCEEDED", 0.01)]
IN_FLIGHT_SHARE, UNMETERABLE_SHARE = 0.01, 0.005
START = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = ("name", "job_id", "key_id", "team", "project", "project_number", "location", "api_version", "model",
           "model_id", "display_name", "input_format", "input_uris", "output_format", "output_prefix",
           "output_directory", "labels", "state", "create_time", "end_time", "recorded_at", "origin",
           "poll_failures", "metering_state", "metering_attempts", "metered_at", "cost_status", "cost_pico",
           "prompt_tokens", "cached_tokens", "candidates_tokens", "thoughts_tokens", "tool_use_prompt_tokens",
           "audio_prompt_tokens", "embedding_tokens", "input_characters", "lines_succeeded", "lines_failed",
           "lines_malformed", "lines_no_usage")
_POOL = 4096


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _usage_pool(rng: random.Random) -> list[tuple[int, int, int, int, int, int, int]]:
    """Distinct usage profiles: (prompt, cached, candidates, thoughts, tool use, lines ok, lines failed)."""
    pool = []
    for _ in range(_POOL):
        lines = rng.randrange(1, 5000)
        prompt = lines * rng.randrange(50, 5000)
        cached = prompt // rng.choice([2, 5, 10, 1000])
        failed = lines // rng.choice([20, 50, 1000])
        pool.append((prompt, cached, lines * rng.randrange(10, 800), lines * rng.randrange(0, 400),
                     rng.choice([0, 0, 0, lines * 30]), lines - failed, failed))
    return pool


def generate(count: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """`count` job rows (values in COLUMNS order, times as UTC text) and the sums the report must find.

    Shaped like a real ledger: each team has two keys, one project and a home region (a tenth of its jobs run
    in `global`); models and end states follow the shares above; create times spread over a year.
    """
    rng = random.Random(seed)
    pool = _usage_pool(rng)
    keys = [(f"key_{i:012x}", TEAMS[i // KEYS_PER_TEAM]) for i in range(len(TEAMS) * KEYS_PER_TEAM)]
    homes = {team: ("us-central1", "europe-west4")[i % 2] for i, team in enumerate(TEAMS)}
    models = rng.choices(range(len(MODELS)), weights=[m[1] for m in MODELS], k=count)
    states = rng.choices([s[0] for s in STATES], weights=[s[1] for s in STATES], k=count)
    seconds = [rng.randrange(365 * 86400) for _ in range(count)]
    seconds.sort()  # jobs arrive in time order, as ids do
    sums = {"jobs": 0, "cost_pico": 0, "prompt": 0, "unpriced": 0, "unmeterable": 0, "in_flight": 0}
    rows: list[tuple[Any, ...]] = []
    for i in range(count):
        key_id, team = keys[rng.randrange(len(keys))]
        model, _, rates = MODELS[models[i]]
        location = "global" if rng.random() < 0.1 else homes[team]
        project_number = f"{510528649000 + TEAMS.index(team)}"
        job_id = f"{3814889423749775360 + i}"
        created = START + timedelta(seconds=seconds[i], microseconds=rng.randrange(10**6))
        created_text = _stamp(created)
        folder = f"gs://bucket-{team}/batch/{i:08d}"
        prompt, cached, candidates, thoughts, tool, succeeded, failed = pool[rng.randrange(_POOL)]
        roll = rng.random()
        state = states[i]
        status: str | None
        cost: int | None = None
        if roll < IN_FLIGHT_SHARE:
            status, metering, state = None, None, "JOB_STATE_RUNNING"
            prompt = cached = candidates = thoughts = tool = succeeded = failed = 0
            sums["in_flight"] += 1
        elif roll < IN_FLIGHT_SHARE + UNMETERABLE_SHARE:
            status, metering = "unmeterable", "unmeterable"
            prompt = cached = candidates = thoughts = tool = succeeded = failed = 0
            sums["unmeterable"] += 1
        elif rates is None:
            status, metering = "unpriced", "metered"
            sums["unpriced"] += 1
        else:
            status, metering = "priced", "metered"
            cost = (prompt - cached + tool) * rates[0] + cached * rates[1] + (candidates + thoughts) * rates[2]
        if status is not None:
            sums["jobs"] += 1
            sums["prompt"] += prompt
            sums["cost_pico"] += cost or 0
        ended_text = None if status is None else _stamp(created + timedelta(minutes=30 + i % 600))
        rows.append((
            f"projects/{project_number}/locations/{location}/batchPredictionJobs/{job_id}", job_id, key_id, team,
            f"proj-{team}", project_number, location, "v1", f"publishers/google/models/{model}", model,
            f"nightly-{team}-{i}", "jsonl", f'["{folder}/input.jsonl"]', "jsonl", f"{folder}/out",
            f"{folder}/out/prediction-model-{created_text.replace(' ', 'T')}Z",
            f'{{"vbp-team": "{team}", "vbp-key": "{key_id}"}}', state, created_text, ended_text, created_text,
            "create", 0, metering, 1 if metering else 0, ended_text, status, cost, prompt, cached, candidates,
            thoughts, tool, 0, 0, 0, succeeded, failed, 0, 0,
        ))
    return rows, sums


def _keys_rows() -> list[tuple[Any, ...]]:
    return [(f"key_{i:012x}", TEAMS[i // KEYS_PER_TEAM], f"bench {i}", "vbp_bench", f"{i:064x}", False, "[]", "[]",
             "[]", "[]", _stamp(START)) for i in range(len(TEAMS) * KEYS_PER_TEAM)]


_KEY_COLUMNS = ("id", "team", "name", "prefix", "secret_hash", "admin", "projects", "locations", "models",
                "operations", "created_at")


def load_sqlite(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert with the sqlite3 driver in one transaction."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.executemany(f"INSERT INTO api_keys ({','.join(_KEY_COLUMNS)}) VALUES "
                             f"({','.join('?' * len(_KEY_COLUMNS))})", _keys_rows())
            conn.executemany(f"INSERT INTO jobs ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})", rows)
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _rollup_backfill_sql() -> str:
    """The statement migration 0004 fills `job_rollups` with from existing jobs (one source of truth)."""
    path = next(shipped("migrations").glob("versions/0004_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module._backfill("postgresql"))


def load_postgres(dsn: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk load with COPY (row triggers off for the load: the rollup is then built in one statement, as migration
    0004 does for existing jobs), then VACUUM ANALYZE so the planner and the visibility map are current."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")  # a superuser's bulk load: no row triggers
        with conn.cursor() as cur:
            with cur.copy(f"COPY api_keys ({','.join(_KEY_COLUMNS)}) FROM STDIN") as copy:
                for key in _keys_rows():
                    copy.write_row(key[:-1] + (key[-1] + "+00",))
            with cur.copy(f"COPY jobs ({','.join(COLUMNS)}) FROM STDIN") as copy:
                times = {COLUMNS.index(c) for c in ("create_time", "end_time", "recorded_at", "metered_at")}
                for row in rows:
                    copy.write_row(tuple(v + "+00" if i in times and v is not None else v for i, v in enumerate(row)))
            cur.execute(_rollup_backfill_sql())
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("VACUUM ANALYZE job_rollups")


def time_report(url: str, by: tuple[str, ...], repeats: int = 5, source: str | None = None) -> tuple[float, float, Any]:
    """(first run, best run) seconds of query + table rendering, and the report (`source`: see run_report)."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    timings: list[float] = []
    result = None
    try:
        for _ in range(repeats):
            with sessions() as session:
                session.connection()  # connect outside the timed part, as `vbp report` has by then
                started = time.perf_counter()
                result = run_report(session, by=by, filter=ReportFilter(), source=source)
                render(result, "table")
                timings.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return timings[0], min(timings), result


def _check(result: Any, sums: dict[str, int]) -> str:
    totals = result.totals
    found = {"jobs": totals.jobs, "cost_pico": totals.cost_pico, "prompt": totals.prompt,
             "unpriced": totals.unpriced_jobs, "unmeterable": totals.unmeterable_jobs, "in_flight": result.in_flight}
    return "totals match" if found == sums else f"TOTALS DIFFER: {found} != {sums}"


def _report_line(name: str, url: str, by: tuple[str, ...], sums: dict[str, int], load: float) -> None:
    first, best, result = time_report(url, by)
    # the same report from every job row, once: what the rollup saves
    scan, _, scanned = time_report(url, by, repeats=1, source="jobs")
    verdict = "meets" if best < TARGET_SECONDS else "MISSES"
    print(f"{name:<10} load {load:6.1f} s   report: first {first:.3f} s, best {best:.3f} s "
          f"({verdict} the {TARGET_SECONDS:.0f} s target; {scan:.2f} s without the rollup)   {len(result.rows)} rows, "
          f"total {format_usd(result.totals.cost_pico)} USD, {_check(result, sums)}"
          + ("" if scanned.totals == result.totals else "   ROLLUP AND JOB ROWS DIFFER"))


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database
    return Path(database)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the ledgers, time the report on each, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--by", default="team,model,month")
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    args = parser.parse_args(argv)
    by = parse_by(args.by)

    started = time.perf_counter()
    rows, sums = generate(args.jobs)
    print(f"report bench: {args.jobs:,} jobs generated in {time.perf_counter() - started:.1f} s; "
          f"vbp report --by {','.join(by)}")
    with tempfile.TemporaryDirectory(prefix="vbp-bench-report-") as tmp:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
            upgrade(url)
            started = time.perf_counter()
            load_sqlite(_sqlite_path(url), rows)
            load = time.perf_counter() - started
            _report_line("sqlite", url, by, sums, load)
        if args.only in (None, "postgres"):
            _postgres(rows, sums, by)
    return 0


def _postgres(rows: Sequence[tuple[Any, ...]], sums: dict[str, int], by: tuple[str, ...]) -> None:
    from tests.support.postgres import LocalPostgres

    server = LocalPostgres()
    server.start()
    try:
        url = server.create_database("bench_report")
        upgrade(url)
        started = time.perf_counter()
        load_postgres(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False), rows)
        load = time.perf_counter() - started
        _report_line("postgresql", url, by, sums, load)
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
