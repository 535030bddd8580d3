"""Everything one emulator holds: its models, jobs, runner, tokens, faults and request log, and the OpenAI and
Azure OpenAI stand-ins with their keys."""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from proxy.emulator.faults import Faults, FaultState
from proxy.emulator.jobs import JobStore
from proxy.emulator.oauth import ServiceAccount, TokenIssuer
from proxy.emulator.openai_api.api import StandIn
from proxy.emulator.openai_api.flavor import AZURE_RESOURCES, azure_flavor, openai_flavor
from proxy.emulator.runner import Runner
from proxy.errors import InvalidArgument

KNOWN_MODELS = (
    "gemini-2.0-flash", "gemini-2.0-flash-001", "gemini-2.0-flash-lite", "gemini-2.0-flash-lite-001",
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "text-embedding-005", "gemini-embedding-001",
)
MAX_LOGGED_BODY = 64 * 1024
# Global Batch's default enqueued-token quota for gpt-4o-mini (1 billion): large enough not to get in the way.
DEFAULT_AZURE_TOKEN_QUOTA = 1_000_000_000


def generated_openai_key() -> str:
    return "sk-emu-" + secrets.token_urlsafe(24)


def generated_azure_key() -> str:
    return secrets.token_hex(16)


# The request log keeps the newest calls only: a soak makes hundreds of thousands, which held whole would grow the
# emulator by hundreds of MB and make every full garbage collection walk them.
MAX_LOGGED_REQUESTS = 10_000


class EmulatorState:
    """The in-process handle tests use: jobs, request log and faults of one running emulator.

    `job_seconds` (the pace) and the faults may be changed at any time; a job keeps those of its creation.
    """

    def __init__(self, *, account: ServiceAccount, gcs_url: str, job_seconds: float = 8.0,
                 extra_models: Iterable[str] = (), token_lifetime: int = 3600, storage_front: bool = False,
                 echo_keys: bool = True, openai_key: str | None = None, azure_key: str | None = None,
                 azure_token_quota: int = DEFAULT_AZURE_TOKEN_QUOTA, azure_quota_mode: str = "fail-fast") -> None:
        self.account = account
        self.gcs_url = gcs_url
        self.job_seconds = job_seconds
        self.models = frozenset(KNOWN_MODELS) | frozenset(extra_models)
        self.jobs = JobStore()
        self.runner = Runner(self.jobs, gcs_url=gcs_url, project=account.project_id, echo_keys=echo_keys)
        self.tokens = TokenIssuer(account, lifetime=token_lifetime)
        self.faults = FaultState()
        self.storage_front = storage_front  # whether Cloud Storage reads pass the emulator (storage_stall works)
        self._log: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._log_lock = threading.Lock()
        self.openai_key = openai_key or generated_openai_key()
        self.azure_key = azure_key or generated_azure_key()
        self.azure_token_quota = azure_token_quota
        self.openai = StandIn(openai_flavor(), self, key=self.openai_key)
        self.azure = {resource: StandIn(azure_flavor(resource), self, key=self.azure_key,
                                        token_quota=azure_token_quota, quota_mode=azure_quota_mode)
                      for resource in AZURE_RESOURCES}

    def stop_runners(self) -> None:
        """Interrupt every running Vertex job and OpenAI or Azure batch."""
        self.runner.stop()
        for standin in (self.openai, *self.azure.values()):
            standin.runner.stop()

    def set_faults(self, faults: Faults | Mapping[str, Any] | None = None, **fields: Any) -> Faults:
        """Replace the fault set (a Faults, its JSON document, or keyword fields); returns what is now set."""
        if not isinstance(faults, Faults):
            faults = Faults.from_json({**(faults or {}), **fields})
        if faults.storage_stall is not None and not self.storage_front:
            raise InvalidArgument("storage_stall needs the Cloud Storage front: start the emulator with "
                                  "--storage-faults")
        self.faults.set(faults)
        return faults

    def log_request(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.append(entry)

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """A copy of the log: method, path, query, headers, body (text, first 64 KiB) and status of each call."""
        with self._log_lock:
            return [dict(entry) for entry in self._log]

    def reset(self) -> None:
        """Clear the request log and the faults (jobs stay)."""
        with self._log_lock:
            self._log.clear()
        self.faults.set(Faults())
