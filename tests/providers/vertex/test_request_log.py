"""The request log writer stores exactly what a plain Core insert of the same rows stores, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger import jobs as ledger
from proxy.ledger.request_log import _CHUNK_ROWS, RequestLogWriter, _MultiRowInsert, chunk_sizes


def _rows(prefix: str, count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        row: dict[str, Any] = {
            "at": start + timedelta(microseconds=i * 1001), "request_id": f"{prefix}{i:04d}", "key_id": f"key_{i % 3}",
            "team": "a" if i % 2 else None, "method": "GET", "route": "get", "api_version": "v1beta1",
            "job_name": f"projects/1/locations/us-central1/batchPredictionJobs/{i}", "status": 200 + i % 5,
            "upstream_status": None if i % 4 == 0 else 200, "latency_ms": i / 7,
            "error": "NOT_FOUND" if i % 9 else None,
        }
        if i % 5 == 0:
            del row["error"], row["job_name"]  # absent columns are NULL, as in the Core insert
        rows.append(row)
    return rows


def _stored(sessions: sessionmaker[Session], prefix: str) -> list[tuple[Any, ...]]:
    with sessions() as session:
        got = session.execute(text(
            "SELECT at, substr(request_id, 2), key_id, team, method, route, api_version, job_name, status, "
            "upstream_status, latency_ms, error FROM request_log WHERE request_id LIKE :p ORDER BY id"),
            {"p": prefix + "%"})
        return [tuple(row) for row in got]


def test_writer_stores_what_a_core_insert_stores(sessions: sessionmaker[Session]) -> None:
    count = 2 * _CHUNK_ROWS + 13  # two full multi-row statements and a short one
    writer = RequestLogWriter(sessions, interval=0.01)
    writer.start()
    try:
        for row in _rows("w", count):
            writer.add(row)
        assert writer.wait_written(count)
    finally:
        writer.close()
    with sessions.begin() as session:
        ledger.log_requests(session, rows=_rows("c", count))

    written, reference = _stored(sessions, "w"), _stored(sessions, "c")
    assert len(written) == count
    assert written == reference
    assert written[5][7] is None and written[5][11] is None and written[1][11] == "NOT_FOUND"
    dialect = sessions.kw["bind"].dialect
    # SQLite takes the multi-row statements; psycopg's named parameters keep the executemany path.
    assert (_MultiRowInsert.of(dialect) is not None) is (dialect.name == "sqlite")


def test_any_count_is_cut_into_full_chunks_then_powers_of_two() -> None:
    lengths = {_CHUNK_ROWS, 32, 16, 8, 4, 2, 1}
    for count in range(0, 4 * _CHUNK_ROWS):
        sizes = chunk_sizes(count)
        assert sum(sizes) == count and set(sizes) <= lengths and sizes == sorted(sizes, reverse=True)
        below = [size for size in sizes if size < _CHUNK_ROWS]
        assert len(below) == len(set(below))  # each power at most once
    assert chunk_sizes(2 * _CHUNK_ROWS + 13) == [_CHUNK_ROWS, _CHUNK_ROWS, 8, 4, 1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # psycopg's path is executemany
def test_batches_of_every_length_run_seven_statements(sessions: sessionmaker[Session]) -> None:
    """Each distinct statement stays prepared on every pooled connection that ran it (SQLite's statement cache):
    batches of 1 to 150 rows must not make 150 of them."""
    engine = sessions.kw["bind"]
    insert = _MultiRowInsert.of(engine.dialect)
    assert insert is not None
    statements: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "request_log" in statement:
            statements.add(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with sessions.begin() as session:
            for count in range(1, 151):
                insert.execute(session.connection(), _rows(f"b{count}-", count))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 7
    with sessions() as session:
        stored = session.execute(text("SELECT count(*) FROM request_log WHERE request_id LIKE 'b%'")).scalar_one()
    assert stored == sum(range(1, 151))
