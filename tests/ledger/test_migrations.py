"""The schema comes from the migrations, and the models never drift from them."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from proxy.ledger.engine import alembic_config, current_revision, head_revision, make_engine, upgrade


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
