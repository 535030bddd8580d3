"""The request log's retention: rows older than VBP_REQUEST_LOG_DAYS are deleted, a batch at a time.

Each statement deletes at most `BATCH` rows (the oldest, by the `at` index) and commits, so no pass holds a long
lock or a large transaction while requests keep being logged. One replica prunes at a time: on PostgreSQL the
pass holds a session advisory lock, and a replica that cannot take it skips its turn (SQLite is served by one
process anyway). `vbp serve` runs a pass every `INTERVAL` seconds, the first one `FIRST_DELAY` after start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import anyio
from anyio import to_thread
from sqlalchemy import Connection, Engine, delete, select, text

from proxy.ledger.jobs import REQUEST_LOG

log = logging.getLogger(__name__)

BATCH = 5000
INTERVAL = 3600.0
FIRST_DELAY = 60.0
# pg_advisory_lock's key for the pruning pass: any bigint no other lock of this database uses ("vbp_rlog").
LOCK_KEY = int.from_bytes(b"vbp_rlog", "big") & 0x7FFF_FFFF_FFFF_FFFF


def _lock(connection: Connection, sql: str) -> bool:
    got = connection.execute(text(sql), {"key": LOCK_KEY}).scalar()
    connection.commit()
    return bool(got)


def prune_request_log(engine: Engine, *, keep_days: int, now: datetime, batch: int = BATCH) -> int | None:
    """Delete the rows older than `keep_days` before `now`; how many, or None when another replica is at it."""
    cutoff = now - timedelta(days=keep_days)
    oldest = select(REQUEST_LOG.c.id).where(REQUEST_LOG.c.at < cutoff).order_by(REQUEST_LOG.c.at).limit(batch)
    statement = delete(REQUEST_LOG).where(REQUEST_LOG.c.id.in_(oldest.scalar_subquery()))
    with engine.connect() as connection:
        locking = connection.dialect.name == "postgresql"
        if locking and not _lock(connection, "SELECT pg_try_advisory_lock(:key)"):
            return None
        try:
            deleted = 0
            while True:
                count = connection.execute(statement).rowcount
                connection.commit()
                deleted += count
                if count < batch:
                    return deleted
        finally:
            if locking:
                _lock(connection, "SELECT pg_advisory_unlock(:key)")


async def keep_pruning(engine: Engine, *, keep_days: int, now: Callable[[], datetime]) -> None:
    """A pruning pass every `INTERVAL` seconds until cancelled; `keep_days` 0 keeps the log forever."""
    if keep_days <= 0:
        return
    await anyio.sleep(FIRST_DELAY)
    while True:
        try:
            deleted = await to_thread.run_sync(
                lambda: prune_request_log(engine, keep_days=keep_days, now=now()))
            if deleted:
                log.info("request log: %d row(s) older than %d day(s) deleted", deleted, keep_days)
        except Exception:  # the database may be down for a while: the next pass tries again
            log.exception("request log pruning failed")
        await anyio.sleep(INTERVAL)
