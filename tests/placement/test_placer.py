"""The placement loop: refusals are routed around (the caller sees one batch), recorded for the breaker and the
figures, and only when every target refused does the caller get NoRoom."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import Placement, PlacementTarget
from proxy.placement.breaker import BreakerRules
from proxy.placement.choice import Target
from proxy.placement.claims import Claim, NoRoom
from proxy.placement.placer import FAILED, FINAL, FULL, Outcome, Placed, Placer, TargetRefused

TARGETS = [Target("azure-a", quota=1000), Target("azure-b", quota=1000), Target("azure-c", quota=1000)]


def _place(placer: Placer, answers: dict[str, TargetRefused | None]) -> tuple[Placed[str], list[str]]:
    tried: list[str] = []

    async def create(claim: Claim) -> Outcome[str]:
        tried.append(claim.target.name)
        answer = answers.get(claim.target.name)
        if answer is not None:
            raise answer
        return Outcome(f"batch on {claim.target.name}", enqueued=250, quota=1000)

    async def run() -> Placed[str]:
        return await placer.place(targets=TARGETS, tokens=100, team="ml", model="gpt-4o-mini", create=create)

    return anyio.run(run), tried


def _targets(sessions: sessionmaker[Session]) -> dict[str, tuple[int, str, int | None]]:
    with sessions() as session:
        return {row.name: (row.failures, row.last_outcome, row.reported_enqueued)
                for row in session.scalars(select(PlacementTarget))}


def test_a_failing_and_a_full_deployment_are_routed_around(sessions: sessionmaker[Session]) -> None:
    placer = Placer(sessions)
    placed, tried = _place(placer, {"azure-a": TargetRefused("503 Service Unavailable", kind=FAILED),
                                    "azure-b": TargetRefused("token_limit_exceeded", kind=FULL, enqueued=990)})
    assert (placed.result, placed.refused, tried) == ("batch on azure-c", ["azure-a", "azure-b"],
                                                      ["azure-a", "azure-b", "azure-c"])
    assert _targets(sessions) == {"azure-a": (1, "failed", None), "azure-b": (0, "full", 990),
                                  "azure-c": (0, "ok", 250)}
    with sessions() as session:
        states = {(p.target, p.state) for p in session.scalars(select(Placement))}
    assert states == {("azure-a", "released"), ("azure-b", "released"), ("azure-c", "held")}
    # the next batch: c holds 250 by its own figure, a has the most headroom again
    assert _place(placer, {})[0].result == "batch on azure-a"


def test_every_deployment_refusing_is_no_room_and_nothing_is_held(sessions: sessionmaker[Session]) -> None:
    placer = Placer(sessions, rules=BreakerRules(threshold=1, cooldown=45))
    down = TargetRefused("timeout", kind=FAILED)
    with pytest.raises(NoRoom) as refused:
        _place(placer, {"azure-a": down, "azure-b": down, "azure-c": down})
    assert str(refused.value) == ("No deployment of gpt-4o-mini can take this batch of 100 queued tokens now "
                                  "(azure-a, azure-b, azure-c refused it). azure-a: timeout. azure-b: timeout. "
                                  "azure-c: timeout.")
    assert refused.value.retry_after == 45  # the breakers opened for 45 s
    with sessions() as session:
        assert {p.state for p in session.scalars(select(Placement))} == {"released"}


def test_a_final_refusal_is_not_tried_elsewhere(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(TargetRefused) as refused:
        _place(Placer(sessions), {"azure-a": TargetRefused("the file is not a batch file", kind=FINAL)})
    assert str(refused.value) == "the file is not a batch file"
    assert _targets(sessions)["azure-a"] == (0, "", None)  # not held against its health
