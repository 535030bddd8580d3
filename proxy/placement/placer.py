"""The placement loop of a create: claim the best target, try the upstream there, and on a refusal that another
target may not give (full, 5xx, 429, timeout) release the claim, record the outcome and try the next, so the
caller sees one batch. Only when no target is left does it raise NoRoom (the door answers 429 + Retry-After).

The create on one target is the caller's (`create(claim)`), so the same loop serves the native door's pools and
the OpenAI door's deployments. It raises TargetRefused for an answer of the upstream's; anything else it raises
(the caller's own error, or a reply lost on the way) leaves the claim `held`, counted until HELD_GRACE, since
the upstream may have the batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.placement import claims
from proxy.placement.breaker import BreakerRules
from proxy.placement.choice import Target

T = TypeVar("T")

FULL, FAILED, FINAL = "full", "failed", "final"


class TargetRefused(Exception):
    """An upstream did not take the batch. `kind`: `full` (over its quota), `failed` (5xx, 429, timeout,
    connection: counts toward its cooldown), or `final` (an answer any target would give: no other is tried)."""

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None, enqueued: int | None = None,
                 quota: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.enqueued = enqueued
        self.quota = quota


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a create on one target returns: its result, and the upstream's enqueued-token figures if it gave any."""

    result: T
    enqueued: int | None = None
    quota: int | None = None


@dataclass(frozen=True)
class Placed(Generic[T]):
    """The create that went through: its result, its claim (bind it to the job), and the targets that refused."""

    result: T
    claim: claims.Claim
    refused: list[str] = field(default_factory=list)


class Placer:
    """Runs placement loops on the ledger (blocking database work in worker threads)."""

    def __init__(self, sessions: sessionmaker[Session], *, rules: BreakerRules | None = None) -> None:
        self.sessions = sessions
        self.rules = rules or BreakerRules()

    def claim(self, *, targets: Sequence[Target], tokens: int, team: str, model: str,
              exclude: Sequence[str] = ()) -> claims.Claim:
        """One claim in its own transaction (blocking)."""
        with self.sessions.begin() as session:
            return claims.claim(session, targets=targets, tokens=tokens, team=team, model=model, now=utcnow(),
                                exclude=exclude, rules=self.rules)

    def refused(self, claim: claims.Claim, refusal: TargetRefused) -> None:
        """Release the claim and record why the upstream refused (blocking)."""
        with self.sessions.begin() as session:
            now = utcnow()
            claims.release(session, placement_id=claim.placement_id, now=now, note=f"{refusal.kind}: {refusal}")
        with self.sessions.begin() as session:
            if refusal.kind == FULL:
                claims.record_full(session, target=claim.target, now=now, error=str(refusal),
                                   enqueued=refusal.enqueued, quota=refusal.quota, rules=self.rules)
            elif refusal.kind == FAILED:
                claims.record_failure(session, target=claim.target.name, now=now, error=str(refusal),
                                      retry_after=refusal.retry_after, rules=self.rules)

    def succeeded(self, claim: claims.Claim, enqueued: int | None, quota: int | None) -> None:
        """Record that the upstream took the batch (blocking)."""
        with self.sessions.begin() as session:
            claims.record_success(session, target=claim.target.name, now=utcnow(), enqueued=enqueued, quota=quota)

    def release(self, placement_id: str, note: str) -> None:
        """Let go of a claim whose create produced no job (blocking)."""
        with self.sessions.begin() as session:
            claims.release(session, placement_id=placement_id, now=utcnow(), note=note)

    def bind(self, placement_id: str, job_pk: int) -> None:
        """Tie a placement to its recorded job (blocking; or call `claims.bind` in the job's own transaction)."""
        with self.sessions.begin() as session:
            claims.bind(session, placement_id=placement_id, job_pk=job_pk, now=utcnow())

    async def place(self, *, targets: Sequence[Target], tokens: int, team: str, model: str,
                    create: Callable[[claims.Claim], Awaitable[Outcome[T]]]) -> Placed[T]:
        """Try the targets best first until one takes the batch; NoRoom when none can, TargetRefused(final)
        as it came."""
        refused: dict[str, str] = {}  # target -> what it said
        only_full = True  # every refusal so far said "full" (none failed)
        while True:
            try:
                claim = await to_thread.run_sync(lambda: self.claim(targets=targets, tokens=tokens, team=team,
                                                                    model=model, exclude=list(refused)))
            except claims.NoRoom as exc:
                if not refused:
                    raise
                said = " ".join(f"{name}: {message}" for name, message in refused.items())
                raise claims.NoRoom(f"{exc} {said}", exc.retry_after, full=exc.full and only_full) from None
            try:
                outcome = await create(claim)
            except TargetRefused as refusal:
                await to_thread.run_sync(self.refused, claim, refusal)
                if refusal.kind == FINAL:
                    raise
                refused[claim.target.name] = str(refusal).rstrip(".") + "."
                only_full = only_full and refusal.kind == FULL
                continue
            await to_thread.run_sync(self.succeeded, claim, outcome.enqueued, outcome.quota)
            return Placed(outcome.result, claim, list(refused))
