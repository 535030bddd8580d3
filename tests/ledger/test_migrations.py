"""The schema comes from the migrations, and the models never drift from them."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic import command
from sqlalchemy import inspect

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
        assert current_revision(engine) == head_revision(settings.migrations_path) == "0004" != newest
    finally:
        engine.dispose()
