"""Report and dashboard answers kept for a few seconds (`VBP_REPORT_CACHE_SECONDS`), per query and per caller.

A cost report or a dashboard page runs several grouping queries over the ledger: tens of milliseconds of CPU each
time. Finance views do not need sub-second freshness, and the same few views are asked for over and over (a page
left open, a script polling `/v1/costs`), so each answer is reused while it is younger than the setting; an answer
is never older than that, counted from when its queries started. Requests that find the same answer missing or
stale together wait for one computation instead of each running its own. The entries are per process and bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from anyio import to_thread

Answer = TypeVar("Answer")
MAX_ENTRIES = 256  # a few views per team: past this the oldest entries go first


class AnswerCache(Generic[Answer]):
    """Answers of blocking computations, by key, reused for `seconds` (0: never kept)."""

    def __init__(self, seconds: float, *, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, Answer]] = {}  # key -> (good until, answer), oldest first
        self._inflight: dict[Hashable, asyncio.Future[Answer]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Hashable, compute: Callable[[], Answer]) -> Answer:
        """The kept answer for `key` while fresh, else `compute()` run once in a worker thread for every waiter."""
        if self.seconds <= 0:
            return await to_thread.run_sync(compute)
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock():
            return entry[1]
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(key)
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(self._compute(key, compute))
            self._inflight[key] = pending

            def done(task: asyncio.Future[Answer], key: Hashable = key) -> None:
                if self._inflight.get(key) is task:
                    del self._inflight[key]
                if not task.cancelled():
                    task.exception()  # seen, even when every waiter gave up

            pending.add_done_callback(done)
        # shield: one caller giving up must not cancel the computation the others wait for.
        return await asyncio.shield(pending)

    async def _compute(self, key: Hashable, compute: Callable[[], Answer]) -> Answer:
        started = self.clock()
        answer = await to_thread.run_sync(compute)
        self._keep(key, started + self.seconds, answer)
        return answer

    def _keep(self, key: Hashable, good_until: float, answer: Answer) -> None:
        now = self.clock()
        for stale in [k for k, (until, _) in self._entries.items() if until <= now]:
            del self._entries[stale]
        self._entries.pop(key, None)  # re-inserted last: the dict stays ordered oldest first
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (good_until, answer)
