"""The request log, written in batches by one background thread so the hot path never waits on the database."""

from __future__ import annotations

import logging
import operator
import queue
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, insert
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger import jobs as ledger

log = logging.getLogger(__name__)

_TABLE = ledger.REQUEST_LOG
_INSERT = insert(_TABLE)
_COLUMNS = ledger.REQUEST_LOG_COLUMNS
SCOPE_KEY = "vbp.record"  # where the gateway's accounting puts the request's record in the ASGI scope


@dataclass(slots=True)
class RequestRecord:
    """What the request log keeps of one request; the route that answers fills in what only it knows."""

    request_id: str
    method: str
    route: str = "unmatched"
    key_id: str | None = None
    team: str | None = None
    api_version: str | None = None
    job_name: str | None = None
    upstream_status: int | None = None
    error: str | None = None

    def row(self, *, status: int, seconds: float, at: datetime) -> dict[str, Any]:
        """The request log's row, once the reply's status and the time it took are known."""
        return {"at": at, "request_id": self.request_id, "method": self.method, "route": self.route,
                "key_id": self.key_id, "team": self.team, "api_version": self.api_version,
                "job_name": self.job_name, "status": status, "upstream_status": self.upstream_status,
                "latency_ms": seconds * 1000, "error": self.error}


def record_of(scope: MutableMapping[str, Any]) -> RequestRecord:
    """The record the gateway's accounting put in this request's scope."""
    record: RequestRecord = scope[SCOPE_KEY]
    return record


# Rows per multi-row INSERT: 64 x 12 columns = 768 parameters, under the oldest SQLite limit (999).
_CHUNK_ROWS = 64


def chunk_sizes(count: int) -> list[int]:
    """`count` rows cut into full chunks, then powers of two (53 -> 32, 16, 4, 1).

    Each distinct statement stays prepared in the sqlite3 statement cache of every pooled connection that ran it
    (a 64-row one holds about 130 KB of C memory, outside Python's allocator), and the writer takes whichever pooled
    connection comes next. With one statement per batch length (1 to 80 rows before), a connection that had met
    every length held 3.7 MB of them; seven lengths hold about 0.2 MB.
    """
    full, rest = divmod(count, _CHUNK_ROWS)
    return [_CHUNK_ROWS] * full + [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]


class _MultiRowInsert:
    """`INSERT ... VALUES (...), (...), ...`: one statement per chunk of rows instead of one per row.

    SQLite's executemany releases and retakes the GIL around every row; with the event loop holding it, each retake
    waits out a switch interval, so a 500-row batch dragged on for ~150 ms and stalled the loop throughout (the
    proxy's p99). Only for drivers with positional `?`/`%s` parameters, whose VALUES group can simply be repeated;
    values go through the same bind processors the Core insert applies.
    """

    def __init__(self, dialect: Dialect) -> None:
        compiled = _INSERT.compile(dialect=dialect, column_keys=list(_COLUMNS))
        head, _, group = str(compiled).partition(" VALUES ")
        self._head = head + " VALUES "
        self._group = group
        self._names = list(compiled.positiontup or ())
        self._get = operator.itemgetter(*self._names)
        processors = [_TABLE.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self._names]
        self._processors = [(index, process) for index, process in enumerate(processors) if process is not None]
        self._sql: dict[int, str] = {}

    @classmethod
    def of(cls, dialect: Dialect) -> _MultiRowInsert | None:
        """The insert for `dialect`, or None when its parameter style cannot be repeated this way."""
        if dialect.paramstyle not in ("qmark", "format") or not dialect.positional:
            return None
        made = cls(dialect)
        return made if made._group and sorted(made._names) == sorted(_COLUMNS) else None

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        start = 0
        for size in chunk_sizes(len(rows)):
            chunk = rows[start:start + size]
            start += size
            values: list[Any] = []
            for row in chunk:
                try:
                    got = list(self._get(row))
                except KeyError:  # a column the row does not name is NULL
                    got = [row.get(name) for name in self._names]
                for index, process in self._processors:
                    got[index] = process(got[index])
                values += got
            sql = self._sql.get(len(chunk))
            if sql is None:
                sql = self._sql[len(chunk)] = self._head + ", ".join([self._group] * len(chunk))
            connection.exec_driver_sql(sql, tuple(values))


class RequestLogWriter:
    """Collects request rows and inserts them every `interval` seconds (or `batch` rows), off the event loop."""

    def __init__(self, sessions: sessionmaker[Session], *, interval: float = 0.25, batch: int = 500) -> None:
        self._sessions = sessions
        self._interval = interval
        self._batch = batch
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="vbp-request-log", daemon=True)
        self._flushed = threading.Condition()
        self._wake = threading.Event()  # cuts a batch's gathering pause short (close, wait_written)
        self._added = 0
        self._written = 0
        self._done = 0  # written or given up on
        self._multi_row: _MultiRowInsert | None | bool = False  # False until the dialect is known

    def start(self) -> None:
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        self._added += 1
        self._queue.put(row)

    def close(self) -> None:
        """Write what is queued and stop."""
        self._queue.put(None)
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is not None:
                # Let a batch gather: waking for every row would cost a transaction (and a GIL hand-off with the
                # event loop) per request.
                self._wake.wait(self._interval)
                self._wake.clear()
            rows: list[dict[str, Any]] = []
            while True:
                if item is None:
                    stop = True
                    break
                rows.append(item)
                if len(rows) >= self._batch:
                    self._write(rows)
                    rows = []
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if rows:
                self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._sessions.begin() as session:
                connection = session.connection()
                if self._multi_row is False:
                    self._multi_row = _MultiRowInsert.of(connection.dialect)
                if isinstance(self._multi_row, _MultiRowInsert):
                    self._multi_row.execute(connection, rows)
                else:
                    ledger.log_requests(session, rows=rows)
        except Exception:  # the log must never take the proxy down
            log.exception("could not write %d request log rows", len(rows))
            written = 0
        else:
            written = len(rows)
        with self._flushed:
            self._written += written
            self._done += len(rows)
            self._flushed.notify_all()

    def wait_written(self, count: int = 0, timeout: float = 5.0) -> bool:
        """Block until every row added so far has been dealt with and at least `count` were written in all."""
        added = self._added
        self._wake.set()
        with self._flushed:
            return self._flushed.wait_for(lambda: self._done >= added and self._written >= count, timeout=timeout)
