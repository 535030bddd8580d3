"""Engines and sessions for the ledger, and the Alembic upgrade that `vbp serve` and `vbp db upgrade` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from proxy.settings import shipped


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings the ledger relies on (SQLite: WAL, foreign keys, a busy timeout)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str, migrations: Path | None = None) -> Config:
    """An Alembic config pointing at the migrations (default: those shipped with the code) and the given database."""
    config = Config()
    config.set_main_option("script_location", str(shipped("migrations") if migrations is None else migrations))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, migrations: Path | None = None) -> None:
    """Bring the database at `url` to the newest migration (of `migrations`, default: those shipped)."""
    command.upgrade(alembic_config(url, migrations), "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(migrations: Path | None = None) -> str | None:
    """The newest revision of the migrations (default: those shipped)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://", migrations)).get_current_head()


def migration_scripts(migrations: Path | None = None) -> set[str]:
    """Every revision id the migrations (default: those shipped) know."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://", migrations))
    return {script.revision for script in scripts.walk_revisions()}
