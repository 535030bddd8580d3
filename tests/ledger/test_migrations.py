"""The schema comes from the migrations, and the models never drift from them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, insert, inspect, text

from proxy.ledger.engine import alembic_config, current_revision, head_revision, make_engine, upgrade
from proxy.settings import Settings, shipped


def test_upgrade_builds_every_table_and_check_finds_no_drift(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) >= {"api_keys", "jobs", "job_events", "request_log",
                                                         "alembic_version"}
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    # `alembic check` raises when autogenerate would produce any operation.
    command.check(alembic_config(database_url))


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_the_migrations_folder_is_the_setting(tmp_path: Path) -> None:
    """VBP_MIGRATIONS_DIR is read: a copy of the migrations without the newest one stops one revision short."""
    shutil.copytree(shipped("migrations"), tmp_path / "m", ignore=shutil.ignore_patterns("__pycache__"))
    newest = head_revision()
    [last] = (tmp_path / "m" / "versions").glob(f"{newest}_*.py")
    last.unlink()
    settings = Settings.from_env({"VBP_MIGRATIONS_DIR": str(tmp_path / "m"),
                                  "VBP_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    upgrade(settings.database_url, settings.migrations_path)
    engine = make_engine(settings.database_url)
    try:
        # the revision the newest one revises (numbers may skip while branches are merged)
        previous = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(newest).down_revision
        assert current_revision(engine) == head_revision(settings.migrations_path) == previous != newest
    finally:
        engine.dispose()
def test_jobs_recorded_before_the_provider_column_are_vertex_jobs(database_url: str) -> None:
    """0006 adds `jobs.provider` in place: the jobs already there read "vertex", and the rollup triggers survive."""
    config = alembic_config(database_url)
    command.upgrade(config, "0005")
    engine = make_engine(database_url)
    try:
        assert "provider" not in {column["name"] for column in inspect(engine).get_columns("jobs")}
        jobs = Table("jobs", MetaData(), autoload_with=engine)  # the table as 0005 left it
        moment = datetime(2026, 11, 1, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(jobs).values(
                name="projects/p/locations/us-central1/batchPredictionJobs/1", job_id="1", team="team-a",
                project="p", location="us-central1", api_version="v1", model="gemini-2.5-flash", display_name="",
                input_uris=[], labels={}, state="JOB_STATE_RUNNING", create_time=moment, recorded_at=moment,
                origin="create", poll_failures=0, metering_attempts=0,
                **{name: 0 for name in ("prompt_tokens", "cached_tokens", "candidates_tokens", "thoughts_tokens",
                                        "tool_use_prompt_tokens", "audio_prompt_tokens", "embedding_tokens",
                                        "input_characters", "lines_succeeded", "lines_failed", "lines_malformed",
                                        "lines_no_usage")}))
        upgrade(database_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT provider FROM jobs")).scalars().all() == ["vertex"]
            if engine.dialect.name == "sqlite":
                triggers = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                                 "AND tbl_name = 'jobs'")).scalars())
                assert triggers == {"job_rollups_insert", "job_rollups_update", "job_rollups_delete"}
    finally:
        engine.dispose()
    command.check(config)
