"""Who owns which job, and the last state the ledger holds for it: a cache in front of the jobs table.

Ownership never changes once a job is recorded, so it can be cached for the life of the process; the
cached state only spares the database a write when a reply shows nothing new. A job the ledger does not hold is
cached as missing for MISS_SECONDS (until this process records it), so that asking again and again for a missing
job costs what asking for another team's job costs: one lookup, then memory. Another replica's new job is seen
here at most MISS_SECONDS late, and only if its id was asked for before it existed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger import jobs as ledger
from proxy.ledger.models import Job
from proxy.tenancy.project_names import MISS_SECONDS


@dataclass
class JobRef:
    pk: int
    name: str
    team: str
    project: str
    project_number: str | None
    state: str

    @classmethod
    def of(cls, job: Job) -> JobRef:
        return cls(job.id, job.name, job.team, job.project, job.project_number, job.state)

    def addressed_by(self, projects: tuple[str, ...]) -> bool:
        return self.project in projects or (self.project_number is not None and self.project_number in projects)


class JobIndex:
    """Lookups by (location, job id) and by full name; `load*` go to the database (blocking: call in a thread)."""

    def __init__(self, sessions: sessionmaker[Session], *, max_entries: int = 100_000,
                 miss_seconds: float = MISS_SECONDS) -> None:
        self._sessions = sessions
        self._by_id: dict[tuple[str, str], JobRef] = {}
        self._by_name: dict[str, JobRef] = {}
        # (location, job id) -> {the project names it was looked up under: until when "missing" holds}
        self._missing: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
        self._max = max_entries
        self._miss_seconds = miss_seconds
        self._lock = threading.Lock()

    def remember(self, job: Job) -> JobRef:
        ref = JobRef.of(job)
        with self._lock:
            if len(self._by_id) >= self._max:
                self._by_id.clear()
                self._by_name.clear()
            self._by_id[(job.location, job.job_id)] = ref
            self._by_name[job.name] = ref
            self._missing.pop((job.location, job.job_id), None)
        return ref

    def cached_name(self, name: str) -> JobRef | None:
        return self._by_name.get(name)

    def cached_for(self, *, location: str, job_id: str, projects: tuple[str, ...]) -> tuple[bool, JobRef | None]:
        """(known, job) from memory alone: a recorded job addressed by one of `projects`, or a recent miss."""
        ref = self._by_id.get((location, job_id))
        if ref is not None and ref.addressed_by(projects):
            return True, ref
        until = self._missing.get((location, job_id), {}).get(projects)
        if until is not None and until > time.monotonic():
            return True, None
        return False, None

    def load(self, *, location: str, job_id: str, projects: tuple[str, ...]) -> JobRef | None:
        """The job from the ledger, remembered; a miss is remembered too, for MISS_SECONDS."""
        with self._sessions() as session:
            job = ledger.find_job(session, job_id=job_id, location=location, projects=projects)
            if job is not None:
                return self.remember(job)
        with self._lock:
            known = self._by_id.get((location, job_id))
            if known is None or not known.addressed_by(projects):  # not recorded meanwhile by another request
                if len(self._missing) >= self._max:
                    self._missing.clear()
                self._missing.setdefault((location, job_id), {})[projects] = time.monotonic() + self._miss_seconds
        return None

    def load_names(self, names: list[str]) -> dict[str, JobRef]:
        with self._sessions() as session:
            found = ledger.find_jobs_by_name(session, names=names)
            return {name: self.remember(job) for name, job in found.items()}

