"""The lock a check-then-write transaction takes so that racing processes cannot interleave (budgets' reservations,
placements).

- PostgreSQL: the caller locks the rows it decides on (`SELECT ... FOR UPDATE`), so replicas queue on them;
- SQLite: `BEGIN IMMEDIATE` takes the database's write lock up front (waiting out the busy timeout the ledger's
  engine sets), so a read and the insert that depends on it cannot interleave with another process's.
"""

from __future__ import annotations

from sqlalchemy.orm import Session


def serialise_on_sqlite(session: Session) -> None:
    """On SQLite, take the write lock from the start of the transaction (call it first); a no-op elsewhere, and
    when the transaction already writes (it holds the lock then)."""
    if session.get_bind().dialect.name != "sqlite":
        return
    connection = session.connection()
    if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")
