"""Every name a project goes by — its aliases, its id, its number — so that a key scoped to one name works with all.

Vertex answers job names with the project NUMBER, and SDKs call `get`/`cancel`/`delete` with that name; a key
scoped to `--project my-project` must still reach its jobs that way. The number of a project is learnt from the
ledger (each job row holds both), so the answer never depends on whether the job being addressed exists or whose
it is: another team's job and a missing one are refused alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import Job

# How long "this project has no known number" is trusted; a known pairing never changes.
MISS_SECONDS = 5.0


class ProjectNames:
    """Resolution with a per-process cache; `load` reads the database (blocking: call it in a thread)."""

    def __init__(self, sessions: sessionmaker[Session], aliases: Mapping[str, str], *,
                 miss_seconds: float = MISS_SECONDS,
                 pools: Mapping[str, tuple[tuple[str, str], ...]] | None = None) -> None:
        self._sessions = sessions
        self._aliases = dict(aliases)
        # a member's names include the pools it is in, so a key scoped to a pool reaches the jobs placed there
        self._pools_of: dict[str, set[str]] = {}
        for pool, members in (pools or {}).items():
            for project, _ in members:
                self._pools_of.setdefault(self._aliases.get(project, project), set()).add(pool)
        self._miss_seconds = miss_seconds
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def static(self, project: str) -> set[str]:
        """The names configuration alone gives: the project, what its alias stands for, the aliases of that, and
        the pools (VBP_PROJECT_POOLS) it is a member of."""
        real = self._aliases.get(project, project)
        return ({project, real} | {alias for alias, target in self._aliases.items() if target == real}
                | self._pools_of.get(real, set()))

    def cached(self, project: str) -> tuple[str, ...] | None:
        entry = self._cache.get(project)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def load(self, project: str) -> tuple[str, ...]:
        """All names of `project`, the one given first."""
        names = self.static(project)
        with self._sessions() as session:
            rows = session.execute(select(Job.project, Job.project_number).where(
                or_(Job.project.in_(names), Job.project_number.in_(names))).distinct()).all()
        learnt = {name for row in rows for name in row if name}
        names |= learnt
        for name in learnt:
            names |= self.static(name)
        complete = any(number for _, number in rows)
        result = (project, *sorted(names - {project}))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[project] = (float("inf") if complete else time.monotonic() + self._miss_seconds, result)
        return result

    def learn(self, project: str, number: str | None) -> None:
        """A job just recorded pairs `project` with `number`: forget what this process thought it knew about them.

        Other processes learn the pairing when their "no number known" entries lapse (MISS_SECONDS).
        """
        if not number or number in (self.cached(project) or ()):
            return
        with self._lock:
            self._cache = {name: entry for name, entry in self._cache.items() if entry[0] == float("inf")}
