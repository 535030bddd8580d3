"""Which ledger a command uses, and whether it is there.

Only `vbp serve` and `vbp db upgrade` may create a ledger. Every other command needs one that exists and is
migrated: with the default `sqlite:///vbp.db`, a command run from another folder would otherwise create a second,
empty ledger there, and the proxy would then refuse the keys made in it, or a report would print an empty table.
Each failure is a `LedgerError` whose message names the URL (password masked) and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from proxy.ledger.engine import current_revision, head_revision, migration_scripts

SETTING = "VBP_DATABASE_URL"
_EXAMPLES = "e.g. sqlite:///vbp.db or postgresql+psycopg://user:password@host/database"


class LedgerError(Exception):
    """The ledger at VBP_DATABASE_URL cannot be used as asked."""


def parse(url: str) -> URL:
    """The URL parsed, its driver importable; else a LedgerError that never repeats the URL (it may hold a password)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError(f"{SETTING} is not a database URL ({_EXAMPLES})") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise LedgerError(f"{SETTING}: no database driver for {parsed.drivername!r} ({_EXAMPLES})") from None
    except ImportError as exc:
        raise LedgerError(f"{SETTING}: the driver for {parsed.drivername!r} is not installed ({exc}); for "
                          "PostgreSQL install vertex-batch-proxy[postgres]") from None
    return parsed


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL (None: in memory, or a `file:` URI we leave to SQLite)."""
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def shown(url: str) -> str:
    """The URL as people should see it: password masked, a relative SQLite path made absolute."""
    parsed = parse(url)
    path = _sqlite_file(parsed)
    if path is not None:
        parsed = parsed.set(database=str(path.resolve()))
    return parsed.render_as_string(hide_password=True)


def _first_line(exc: DBAPIError) -> str:
    message = str(exc.orig) if exc.orig is not None else str(exc)
    return next((line.strip() for line in message.splitlines() if line.strip()), type(exc).__name__)


def _probe(url: str) -> str | None:
    """Connect without changing anything; the migration the database is at (None: no schema)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        return current_revision(engine)
    except DBAPIError as exc:
        raise LedgerError(f"cannot open the ledger at {shown(url)} ({SETTING}): {_first_line(exc)}") from None
    finally:
        engine.dispose()


def check_creatable(url: str) -> bool:
    """For `vbp serve` and `vbp db upgrade`, before they create or migrate anything: the ledger can be opened or
    created. True when it does not exist yet (a SQLite file that the migration will create)."""
    parsed = parse(url)
    path = _sqlite_file(parsed)
    if path is not None and not path.exists():
        folder = path.resolve().parent
        if not folder.is_dir():
            raise LedgerError(f"cannot create the ledger at {shown(url)} ({SETTING}): the folder {folder} does not "
                              "exist")
        if not _writable(folder):
            raise LedgerError(f"cannot create the ledger at {shown(url)} ({SETTING}): the folder {folder} is not "
                              "writable")
        return True
    _probe(url)
    return False


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def require_ledger(url: str, migrations: Path | None = None) -> None:
    """For every other command: the ledger exists and its schema is at the newest migration; never creates it."""
    parsed = parse(url)
    path = _sqlite_file(parsed)
    if path is not None and not path.is_file():
        raise LedgerError(f"no ledger at {shown(url)}: the file does not exist. Set {SETTING} to the ledger "
                          "`vbp serve` uses (or run `vbp db upgrade` to create a new one).")
    revision = _probe(url)
    if revision is None:
        raise LedgerError(f"the ledger at {shown(url)} has no schema: run `vbp db upgrade` (or start `vbp serve`) "
                          "first.")
    head = head_revision(migrations)
    if revision != head:
        if revision not in migration_scripts(migrations):
            raise LedgerError(f"the ledger at {shown(url)} is at migration {revision}, newer than this vbp knows "
                              f"(its newest is {head}): upgrade vbp.")
        raise LedgerError(f"the ledger at {shown(url)} is at migration {revision}, this vbp needs {head}: run "
                          "`vbp db upgrade`.")
