"""Batches: their record and JSON, and a thread-safe store that moves them through their states.

validating -> in_progress -> finalizing -> completed; validating -> failed; any unfinished state -> cancelling
-> cancelled. Times are unix seconds; `request_counts` and `usage` grow as lines are answered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from proxy.emulator.faults import JobFaults
from proxy.emulator.openai_api.errors import OpenAIError, not_found
from proxy.emulator.openai_api.flavor import Flavor

UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
COMPLETION_WINDOW = 86400


@dataclass
class Batch:
    """One batch; `deployment` is its lines' model name (an Azure deployment name on Azure)."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    faults: JobFaults
    job_seconds: float
    status: str = "validating"
    created_at: int = field(default_factory=lambda: int(time.time()))
    deployment: str | None = None
    enqueued_tokens: int = 0
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, int] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # prompt, cached, output, reasoning
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def to_json(self, flavor: Flavor) -> dict[str, Any]:
        """The Batch object."""
        body: dict[str, Any] = {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            # Azure jobs never expire (they run until cancelled); OpenAI's expire 24 h after creation.
            "expires_at": None if flavor.azure else self.created_at + COMPLETION_WINDOW,
        }
        for name in ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"):
            body[f"{name}_at"] = self.times.get(name)
        body["request_counts"] = {"total": self.total, "completed": self.completed, "failed": self.failed}
        if flavor.batch_usage:
            prompt, cached, output, reasoning = self.tokens
            body["usage"] = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                             "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
                             "total_tokens": prompt + output}
        if not flavor.azure and self.deployment is not None:
            body["model"] = self.deployment
        body["metadata"] = self.metadata
        return body


class BatchStore:
    """Every batch of one API; all changes go through its lock."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self._batches: dict[str, Batch] = {}
        self._lock = threading.RLock()

    def add(self, batch: Batch) -> None:
        with self._lock:
            self._batches[batch.id] = batch

    def get(self, batch_id: str) -> Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise not_found("Batch", batch_id)
        return batch

    def all(self) -> list[Batch]:
        with self._lock:
            return list(self._batches.values())

    def snapshot(self, batch: Batch) -> dict[str, Any]:
        with self._lock:
            return batch.to_json(self.flavor)

    def newest_first(self) -> list[dict[str, Any]]:
        with self._lock:
            batches = sorted(self._batches.values(), key=lambda b: (b.created_at, b.id), reverse=True)
            return [b.to_json(self.flavor) for b in batches]

    def enqueued(self, deployment: str) -> int:
        """Tokens of the unfinished batches of a deployment (Azure's enqueued-token count)."""
        with self._lock:
            return sum(b.enqueued_tokens for b in self._batches.values()
                       if b.deployment == deployment and b.status in UNFINISHED)

    def admit(self, batch: Batch, *, quota: int | None) -> tuple[bool, int]:
        """Add a batch unless its tokens would take its deployment past `quota`; (added, enqueued tokens now)."""
        with self._lock:
            current = self.enqueued(batch.deployment or "")
            if quota is not None and current + batch.enqueued_tokens > quota:
                return False, current
            self._batches[batch.id] = batch
            return True, current + batch.enqueued_tokens

    def move(self, batch: Batch, status: str, **changes: Any) -> bool:
        """Set a batch's status (and its `{status}_at` time); False when a cancel came first."""
        with self._lock:
            if batch.status in ("cancelling", "cancelled") and status not in ("cancelled",):
                return False
            batch.status = status
            batch.times.setdefault(status, int(time.time()))
            for name, value in changes.items():
                setattr(batch, name, value)
            return True

    def count(self, batch: Batch, *, ok: bool, tokens: tuple[int, int, int, int]) -> None:
        with self._lock:
            if ok:
                batch.completed += 1
                batch.tokens = [a + b for a, b in zip(batch.tokens, tokens, strict=True)]
            else:
                batch.failed += 1

    def cancel(self, batch_id: str) -> Batch:
        """Ask a batch to stop: cancelling now, cancelled once its runner has written what it answered."""
        with self._lock:
            batch = self.get(batch_id)
            if batch.status not in UNFINISHED:
                raise OpenAIError(409, f"Cannot cancel a batch with status '{batch.status}'.")
            if batch.status != "cancelling":
                batch.status = "cancelling"
                batch.times["cancelling"] = int(time.time())
            batch.cancel_requested.set()
            return batch
