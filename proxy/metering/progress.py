"""Why a job has no figure yet, and when the proxy looks at it again: the sentence `vbp meter`, `vbp report` and the
dashboard show for a job in flight.

A job in flight is either running (its provider has not ended it: the poller checks it again at `next_poll_at`) or
waiting (it ended, but its outputs could not be metered yet: `metering_error` says why, `next_poll_at` is the next
try), or being metered right now by some process (until its claim lapses).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from proxy.ledger.models import Job
from proxy.providers.base import BatchProvider
from proxy.providers.registry import DEFAULT_PROVIDER, UnknownProvider, get_provider


def utc_text(moment: datetime) -> str:
    """`2026-11-21 10:00:05 UTC`."""
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class Progress:
    """The ledger's columns that say where a job without a figure stands."""

    state: str
    metering_state: str | None
    metering_error: str | None
    next_poll_at: datetime | None
    claim_until: datetime | None
    poll_failures: int = 0
    provider: str = DEFAULT_PROVIDER

    @classmethod
    def of(cls, job: Job) -> Progress:
        return cls(state=job.state, metering_state=job.metering_state, metering_error=job.metering_error,
                   next_poll_at=job.next_poll_at, claim_until=job.claim_until, poll_failures=job.poll_failures or 0,
                   provider=job.provider or DEFAULT_PROVIDER)

    def _provider(self) -> BatchProvider | None:
        try:
            return get_provider(self.provider)
        except UnknownProvider:  # a job recorded by a newer proxy: shown with its state as recorded
            return None

    @property
    def ended(self) -> bool:
        provider = self._provider()
        return self.metering_state is not None or (provider is not None and provider.ended(self.state))

    @property
    def kind(self) -> str:
        """running | waiting | claimed."""
        if self.metering_state == "claimed":
            return "claimed"
        return "waiting" if self.ended else "running"

    def reason(self) -> str:
        """Why the job has no figure yet, without the time."""
        provider = self._provider()
        short = provider.state_name(self.state) if provider is not None else self.state
        if self.metering_state == "claimed":
            return "a process is metering it now"
        if not self.ended:
            failures = (f"; the last {self.poll_failures} check(s) of Vertex failed" if self.poll_failures else "")
            return f"{short}: not ended yet{failures}"
        if self.metering_error:
            return self.metering_error
        if self.metering_state is None:
            return f"ended {short}; the poller fetches the whole job (its outputInfo) before metering it"
        return f"ended {short}; waiting for the next metering pass"

    def next_time(self, now: datetime) -> str:
        """When the proxy looks at the job again, as words."""
        if self.metering_state == "claimed":
            return f"its claim lasts until {utc_text(self.claim_until)}" if self.claim_until else "its claim is held"
        verb = "next try" if self.ended else "next check"
        if self.next_poll_at is None or self.next_poll_at <= now:
            return f"{verb} at the next poll pass"
        return f"{verb} at {utc_text(self.next_poll_at)}"

    def describe(self, now: datetime) -> str:
        """`ended SUCCEEDED with 2 completed line(s), but no output file ... is visible yet; next try at ... UTC`."""
        return f"{self.reason()}; {self.next_time(now)}"
