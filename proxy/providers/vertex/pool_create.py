"""A native create whose project is a pool (VBP_PROJECT_POOLS): placed on one of the pool's project/locations.

The pool decides the location, whatever the caller wrote. Members the key's scopes do not allow are left out.
Each try goes through `proxy.placement.placer`: a member answering 429 or 5xx (503, 500), or that cannot be
reached, is routed around and counted toward its cooldown; any other reply (200, or a 4xx every member would
give) goes back to the caller as Vertex wrote it. A timeout (504, or no reply in time) is NOT routed around: the
job may exist upstream, and creating it again elsewhere would run the batch twice; its claim stays held (the job,
once reconciliation adopts it, or HELD_GRACE lets it go). With every member refusing or cooling down, the caller
gets 429 RESOURCE_EXHAUSTED with a Retry-After.

The batch's queued tokens are the budgets' estimate's input tokens (`proxy.placement.queued_tokens`); an input
the proxy cannot estimate counts 1 token, so such batches still spread by count.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from proxy.errors import ApiError, DeadlineExceeded, PermissionDenied, ResourceExhausted
from proxy.placement.choice import Target
from proxy.placement.claims import Claim, NoRoom
from proxy.placement.placer import FAILED, Outcome, Placer, TargetRefused
from proxy.tenancy.keys import Principal
from proxy.upstream import UpstreamResponse
from proxy.upstream.retry import retry_after

if TYPE_CHECKING:
    from proxy.budgets.admission import BudgetGate

TARGET_PREFIX = "vertex:"  # a pool member's placement target: `vertex:<project>/<location>`


def target_name(project: str, location: str) -> str:
    """The placement target of one project/location (shared by every pool naming it: they share its queue)."""
    return f"{TARGET_PREFIX}{project}/{location}"


@dataclass(frozen=True)
class PoolCreated:
    """Where the create went, Vertex's reply, and the claim (bind it to the job on a 200)."""

    project: str
    location: str
    reply: UpstreamResponse
    claim: Claim


def _message(data: bytes) -> str:
    """The message of Google's error envelope, else the start of the body."""
    try:
        message = json.loads(data)["error"]["message"]
        if isinstance(message, str) and message:
            return message[:300]
    except (ValueError, KeyError, TypeError):
        pass
    return data[:300].decode("utf-8", "replace")


async def pool_tokens(gate: BudgetGate | None, create_body: dict[str, Any]) -> int:
    """The queued tokens of a pool's job (its estimate's input tokens); 1 when it cannot be estimated."""
    from proxy.budgets.admission import Unestimable

    if gate is None:
        return 1
    try:
        estimate = await to_thread.run_sync(gate.estimate_job, create_body)
    except Unestimable:
        return 1
    return max(1, estimate.input_tokens)


def allowed_members(principal: Principal, pool: str, members: Sequence[tuple[str, str]],
                    names_of: Callable[[str], set[str]]) -> list[tuple[str, str]]:
    """The members the key may create in (its project and location scopes); PermissionDenied when none."""
    allowed = [(project, location) for project, location in members
               if (not principal.projects or ({pool} | names_of(project)) & set(principal.projects))
               and (not principal.locations or location in principal.locations)]
    if not allowed:
        raise PermissionDenied(f"This key may not use any project/location of the pool {pool!r}.")
    return allowed


async def place_on_vertex(placer: Placer, *, places: Mapping[str, tuple[str, str]], targets: Sequence[Target],
                          team: str, model: str, tokens: int,
                          send: Callable[[str, str], Awaitable[UpstreamResponse]]) -> PoolCreated:
    """Place a Vertex create among `targets` (`places`: each target's project/location; `send(project, location)`
    forwards it there): 429/5xx/unreachable routed around, any other reply returned; NoRoom when none takes it.
    Shared by pools and the OpenAI door's Gemini batches (targets: its catalog deployments)."""

    async def create(claim: Claim) -> Outcome[UpstreamResponse]:
        project, location = places[claim.target.name]
        try:
            reply = await send(project, location)
        except DeadlineExceeded:
            raise
        except ApiError as exc:  # the member could not be reached
            raise TargetRefused(f"{exc.status}: {exc.message}", kind=FAILED) from None
        if reply.status == 429 or reply.status in (500, 502, 503):
            raise TargetRefused(f"{reply.status} {_message(await reply.read())}", kind=FAILED,
                                retry_after=retry_after(reply.headers))
        return Outcome(reply)

    placed = await placer.place(targets=targets, tokens=tokens, team=team, model=model, create=create)
    project, location = places[placed.claim.target.name]
    return PoolCreated(project, location, placed.result, placed.claim)


async def create_in_pool(placer: Placer, *, pool: str, members: Sequence[tuple[str, str]], aliases: Mapping[str, str],
                         team: str, model: str, tokens: int,
                         send: Callable[[str, str], Awaitable[UpstreamResponse]]) -> PoolCreated:
    """Place the create on the best member (`send(project, location)` forwards it there); see the module
    docstring for what is routed around."""
    places = {target_name(aliases.get(project, project), location): (aliases.get(project, project), location)
              for project, location in members}
    try:
        return await place_on_vertex(placer, places=places, targets=[Target(name) for name in places], team=team,
                                     model=model, tokens=tokens, send=send)
    except NoRoom as exc:
        raise ResourceExhausted(f"{exc} Pool {pool!r}.", headers={"retry-after": str(exc.retry_after)}) from None
