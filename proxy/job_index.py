"""Who owns which job, and the last state the ledger holds for it: a cache in front of the jobs table.

Ownership never changes once a job is recorded, so it can be cached for the life of the process; the
cached state only spares the database a write when a reply shows nothing new.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from proxy import ledger
from proxy.db.models import Job


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
    """Lookups by (location, job id) and by full name; misses go to the database (blocking: call in a thread)."""

    def __init__(self, sessions: sessionmaker[Session], *, max_entries: int = 100_000) -> None:
        self._sessions = sessions
        self._by_id: dict[tuple[str, str], JobRef] = {}
        self._by_name: dict[str, JobRef] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def remember(self, job: Job) -> JobRef:
        ref = JobRef.of(job)
        with self._lock:
            if len(self._by_id) >= self._max:
                self._by_id.clear()
                self._by_name.clear()
            self._by_id[(job.location, job.job_id)] = ref
            self._by_name[job.name] = ref
        return ref

    def cached(self, *, location: str, job_id: str) -> JobRef | None:
        return self._by_id.get((location, job_id))

    def cached_name(self, name: str) -> JobRef | None:
        return self._by_name.get(name)

    def load(self, *, location: str, job_id: str, projects: tuple[str, ...]) -> JobRef | None:
        with self._sessions() as session:
            job = ledger.find_job(session, job_id=job_id, location=location, projects=projects)
            return self.remember(job) if job is not None else None

    def load_names(self, names: list[str]) -> dict[str, JobRef]:
        with self._sessions() as session:
            found = ledger.find_jobs_by_name(session, names=names)
            return {name: self.remember(job) for name, job in found.items()}

