"""Reloading the pricing table of a running proxy when its files change, so that a price added to the folder
applies to the next jobs metered, without a restart.

The poller checks at every pass, cheaply: the name, size and modification time of each `*.toml` (one `stat` per
file). When they change, the whole folder is loaded again; a folder that does not load (a half-written or invalid
file) leaves the table in use as it is, logs the error, and is tried again at its next change. SIGHUP asks for a
load at the next pass whatever the files' stat says (for a file replaced with the same size within the same
clock tick).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from proxy.metering.pricing import PricingError, PricingTable

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...] | str


class PricingWatcher:
    """The pricing table in use, and the state of the folder it was loaded from."""

    def __init__(self, table: PricingTable) -> None:
        self.table = table
        self.directory: Path = table.directory
        self._seen = self._signature()
        self._requested = threading.Event()

    def _signature(self) -> Signature:
        try:
            return tuple((path.name, stat.st_size, stat.st_mtime_ns)
                         for path in sorted(self.directory.glob("*.toml")) for stat in [path.stat()])
        except OSError as exc:  # the folder is gone or unreadable: load() reports it
            return f"{type(exc).__name__}: {exc}"

    def request_reload(self) -> None:
        """Load the folder at the next check whatever its files' stat says (from a SIGHUP handler: only sets a flag)."""
        self._requested.set()

    def check(self) -> bool:
        """Load the folder again if its files changed or a reload was requested; True when a new table is in use."""
        requested = self._requested.is_set()
        self._requested.clear()
        signature = self._signature()  # taken before loading: a change made while loading is seen next time
        if signature == self._seen and not requested:
            return False
        self._seen = signature
        why = "on SIGHUP" if requested else "after its files changed"
        try:
            table = PricingTable.load(self.directory)
        except PricingError as exc:
            log.error("pricing table NOT reloaded %s: %s; still using version %s", why, exc, self.table.version[:12])
            return False
        if table.version == self.table.version:
            log.info("pricing table reloaded %s: unchanged (version %s)", why, table.version[:12])
            return False
        log.info("pricing table reloaded %s from %s: version %s with %d models (was %s with %d)", why,
                 self.directory, table.version[:12], len(table.models), self.table.version[:12],
                 len(self.table.models))
        self.table = table
        return True
