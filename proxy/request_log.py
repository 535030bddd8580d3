"""The request log, written in batches by one background thread so the hot path never waits on the database."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from proxy import ledger

log = logging.getLogger(__name__)


class RequestLogWriter:
    """Collects request rows and inserts them every `interval` seconds (or `batch` rows), off the event loop."""

    def __init__(self, sessions: sessionmaker[Session], *, interval: float = 0.25, batch: int = 500) -> None:
        self._sessions = sessions
        self._interval = interval
        self._batch = batch
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="vbp-request-log", daemon=True)
        self._flushed = threading.Condition()
        self._written = 0

    def start(self) -> None:
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        self._queue.put(row)

    def close(self) -> None:
        """Write what is queued and stop."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        stop = False
        while not stop:
            rows: list[dict[str, Any]] = []
            try:
                item = self._queue.get(timeout=self._interval)
            except queue.Empty:
                continue
            while True:
                if item is None:
                    stop = True
                    break
                rows.append(item)
                if len(rows) >= self._batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if rows:
                self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._sessions.begin() as session:
                ledger.log_requests(session, rows=rows)
        except Exception:  # the log must never take the proxy down
            log.exception("could not write %d request log rows", len(rows))
            return
        with self._flushed:
            self._written += len(rows)
            self._flushed.notify_all()

    def wait_written(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` rows were written in all (for tests and shutdown)."""
        with self._flushed:
            return self._flushed.wait_for(lambda: self._written >= count, timeout=timeout)
