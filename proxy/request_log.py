"""The request log, written in batches by one background thread so the hot path never waits on the database."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from proxy.db.models import RequestLog

log = logging.getLogger(__name__)

_TABLE = RequestLog.metadata.tables[RequestLog.__tablename__]
_INSERT = insert(_TABLE)
_COLUMNS = tuple(column.name for column in _TABLE.columns if not column.primary_key)


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
                # A Core insert: the ORM's bulk path costs several times as much per row.
                # Every row gets every column, since one executemany statement serves the whole batch.
                session.connection().execute(_INSERT, [{name: row.get(name) for name in _COLUMNS} for row in rows])
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
