"""The emulator's jobs: their record, their REST JSON and a thread-safe store that moves them through states."""

from __future__ import annotations

import hashlib
import secrets
import threading
from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proxy.emulator.faults import JobFaults
from proxy.emulator.predictions import rfc3339
from proxy.errors import FailedPrecondition, NotFound
from proxy.providers.vertex.states import JobState

_INT64_MAX = 2**63 - 1


def project_number(project: str) -> str:
    """The 12-digit number of a project id (deterministic); a number is its own number."""
    if project.isdigit():
        return project
    digest = int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big")
    return str(100_000_000_000 + digest % 900_000_000_000)


def resource_id() -> str:
    """A 19-digit id that fits in an int64, like Vertex's job and operation ids."""
    return str(10**18 + secrets.randbelow(_INT64_MAX - 10**18))


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    """One batch prediction job; `spec` holds the client-given fields of the create body (camelCase).

    `faults` and `job_seconds` (the pace) are captured when the job is created.
    """

    project_number: str
    location: str
    job_id: str
    spec: dict[str, Any]
    model_id: str
    faults: JobFaults
    job_seconds: float
    state: JobState = JobState.JOB_STATE_PENDING
    create_time: datetime = field(default_factory=now_utc)
    update_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    output_dir: str | None = None
    successful: int = 0
    failed: int = 0
    incomplete: int = 0
    has_stats: bool = False
    error: dict[str, Any] | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    # The JSON view, made once per change: a list with a filter views every job it tests (a soak's thousands).
    view: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"projects/{self.project_number}/locations/{self.location}/batchPredictionJobs/{self.job_id}"

    @property
    def model_name(self) -> str:
        return (f"projects/{self.project_number}/locations/{self.location}/publishers/google/models/"
                f"{self.model_id}")

    def to_json(self, *, enum_int: bool = False) -> dict[str, Any]:
        """The job as Vertex's REST API answers it (proto3 JSON: int64 as strings, zero counts left out)."""
        if not enum_int:
            if self.view is None:
                self.view = self._json(enum_int=False)
            return dict(self.view)
        return self._json(enum_int=True)

    def changed(self) -> None:
        """Forget the cached JSON view: the store calls this under its lock with every change it makes."""
        self.view = None

    def _json(self, *, enum_int: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, **self.spec, "model": self.model_name, "modelVersionId": "1"}
        body["state"] = int(self.state) if enum_int else self.state.name
        if self.error is not None:
            body["error"] = dict(self.error)
        if self.output_dir is not None:
            body["outputInfo"] = {"gcsOutputDirectory": self.output_dir}
        if self.has_stats:
            counts = {"successfulCount": self.successful, "failedCount": self.failed,
                      "incompleteCount": self.incomplete}
            body["completionStats"] = {key: str(value) for key, value in counts.items() if value}
        body["createTime"] = rfc3339(self.create_time)
        if self.start_time is not None:
            body["startTime"] = rfc3339(self.start_time)
        if self.end_time is not None:
            body["endTime"] = rfc3339(self.end_time)
        body["updateTime"] = rfc3339(self.update_time or self.create_time)
        return body


def _listing_order(job: Job) -> tuple[datetime, str]:
    return job.create_time, job.job_id


class JobStore:
    """Every job of one emulator, keyed by (project number, location, id); all changes go through its lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[tuple[str, str, str], Job] = {}
        # (project number, location) -> its jobs, oldest first: a list reads its location, not every job, unsorted
        self._located: dict[tuple[str, str], list[Job]] = {}

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[(job.project_number, job.location, job.job_id)] = job
            insort(self._located.setdefault((job.project_number, job.location), []), job, key=_listing_order)

    def get(self, project: str, location: str, job_id: str) -> Job:
        """The job, or NotFound (a project id and its number find the same jobs)."""
        with self._lock:
            job = self._jobs.get((project_number(project), location, job_id))
        if job is None:
            raise NotFound(f'The BatchPredictionJob "{job_id}" does not exist.')
        return job

    def in_location(self, project: str, location: str) -> list[Job]:
        """The location's jobs, newest first (ties broken by id, so paging is stable)."""
        with self._lock:
            return self._located.get((project_number(project), location), [])[::-1]

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def snapshot(self, job: Job, *, enum_int: bool = False) -> dict[str, Any]:
        """A consistent JSON view of a job that a runner thread may be changing."""
        with self._lock:
            return job.to_json(enum_int=enum_int)

    def count(self, job: Job, *, successful: int = 0, failed: int = 0, incomplete: int = 0) -> None:
        """Add to a job's completion counts."""
        with self._lock:
            job.successful += successful
            job.failed += failed
            job.incomplete += incomplete
            job.update_time = now_utc()
            job.changed()

    def start(self, job: Job, output_dir: str) -> bool:
        """PENDING -> RUNNING; False when a cancel came first."""
        with self._lock:
            if job.cancel_requested.is_set():
                return False
            job.state = JobState.JOB_STATE_RUNNING
            job.start_time = job.update_time = now_utc()
            job.output_dir = output_dir
            job.has_stats = True
            job.changed()
            return True

    def finish(self, job: Job, state: JobState, *, error: dict[str, Any] | None = None) -> None:
        """Move a job to a terminal state."""
        with self._lock:
            job.state = state
            job.error = error
            job.end_time = job.update_time = now_utc()
            job.changed()

    def cancel(self, project: str, location: str, job_id: str) -> Job:
        """Ask a job to stop: CANCELLING now, CANCELLED once its runner has closed its output."""
        with self._lock:
            job = self.get(project, location, job_id)
            if job.state.terminal:
                raise FailedPrecondition(f"Cannot cancel BatchPredictionJob {job.name} in state {job.state.name}.")
            if job.state != JobState.JOB_STATE_CANCELLING:
                job.state = JobState.JOB_STATE_CANCELLING
                job.update_time = now_utc()
                job.changed()
            job.cancel_requested.set()
            return job

    def delete(self, project: str, location: str, job_id: str) -> Job:
        """Forget an ended job."""
        with self._lock:
            job = self.get(project, location, job_id)
            if not job.state.terminal:
                raise FailedPrecondition(
                    f"BatchPredictionJob {job.name} is in state {job.state.name}; only a job that has ended "
                    "can be deleted. Cancel it first.")
            del self._jobs[(job.project_number, job.location, job.job_id)]
            self._located[(job.project_number, job.location)].remove(job)
            return job
