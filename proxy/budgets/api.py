"""HTTP: the budgets admin API and the dry run; errors in Google's envelope.

    GET    /v1/budgets                      -> {"budgets": [view, ...]}          (admin keys)
    PUT    /v1/budgets/{team}               {usd, period?, allow_unestimated?} -> view   (the team's budget)
    PUT    /v1/budgets/{team}/keys/{key}    the same, for one key of the team
    DELETE /v1/budgets/{team}[/keys/{key}]  -> {"removed": true}
    POST   /v1/estimates                    a Vertex create body, or {"input_file_id": ...} (an OpenAI-door file of
                                            the caller's team, of any model of the catalog) -> the estimate (any
                                            key; nothing is created)

A view is `{team, key_id, period, limit_usd, spent_usd, reserved_usd, remaining_usd, allow_unestimated}`,
amounts as exact decimal strings. An estimate applies the create's checks first (the key's model scope and the
team's data boundary), and answers `{"model", "lines", "input_tokens", "max_output_tokens", "cost_usd": {"low",
"high"}, "budget": {...} | null, ...}`: `budget` is the covering budget with the least remaining, and whether
the batch would fit (`fits`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.budgets import store
from proxy.budgets.admission import Unestimable
from proxy.budgets.estimate import Estimate
from proxy.clock import utcnow
from proxy.errors import FailedPrecondition, InvalidArgument, NotFound
from proxy.ledger.request_log import record_of
from proxy.openai_door.file_jobs import estimate_body as file_estimate_body
from proxy.openai_door.file_jobs import estimated_file, openai_file_estimate
from proxy.providers.vertex.create_body import body_model
from proxy.providers.vertex.job_fields import normalise_job
from proxy.providers.vertex.resources import model_id
from proxy.services import Services
from proxy.tenancy.auth import authenticate
from proxy.tenancy.data_boundaries import check_job_locations
from proxy.tenancy.key_api import admin_endpoint, read_body
from proxy.tenancy.keys import Principal
from proxy.tenancy.scopes import check_model

_FIELDS = {"usd", "period", "allow_unestimated"}


def budget_routes(services: Callable[[], Services | None]) -> list[Route]:
    """The routes, for `create_app` to list."""
    return [
        Route("/v1/budgets", admin_endpoint(services, "budgets.list", _list), methods=["GET"]),
        Route("/v1/budgets/{team}", admin_endpoint(services, "budgets.set", _set), methods=["PUT"]),
        Route("/v1/budgets/{team}/keys/{key}", admin_endpoint(services, "budgets.set", _set), methods=["PUT"]),
        Route("/v1/budgets/{team}", admin_endpoint(services, "budgets.remove", _remove), methods=["DELETE"]),
        Route("/v1/budgets/{team}/keys/{key}", admin_endpoint(services, "budgets.remove", _remove),
              methods=["DELETE"]),
        Route("/v1/estimates", _estimate_endpoint(services), methods=["POST"]),
    ]


async def _list(request: Request, principal: Principal, services: Services) -> Response:
    def read() -> list[dict[str, Any]]:
        with services.sessions() as session:
            return [status.to_json() for status in store.list_budgets(session, now=utcnow())]

    return JSONResponse({"budgets": await to_thread.run_sync(read)})


async def _set(request: Request, principal: Principal, services: Services) -> Response:
    body = await read_body(request)
    unknown = sorted(set(body) - _FIELDS)
    if unknown or "usd" not in body:
        raise InvalidArgument(f"A budget takes usd (required), period and allow_unestimated; got {sorted(body)}.")
    allow = body.get("allow_unestimated")
    if allow is not None and not isinstance(allow, bool):
        raise InvalidArgument("allow_unestimated must be true or false.")
    team, key_id = request.path_params["team"], request.path_params.get("key")

    def write() -> dict[str, Any]:
        with services.sessions.begin() as session:
            row = store.set_budget(session, actor=principal.key_id, team=team, key_id=key_id,
                                   limit_pico=store.usd_to_pico(str(body["usd"])), period=str(body.get("period",
                                                                                                      "month")),
                                   allow_unestimated=allow, now=utcnow())
            return store.status(session, row, now=utcnow()).to_json()

    try:
        return JSONResponse(await to_thread.run_sync(write))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


async def _remove(request: Request, principal: Principal, services: Services) -> Response:
    team, key_id = request.path_params["team"], request.path_params.get("key")

    def write() -> bool:
        with services.sessions.begin() as session:
            return store.remove_budget(session, team=team, key_id=key_id)

    if not await to_thread.run_sync(write):
        raise NotFound(f"No budget for {'key ' + key_id + ' of ' if key_id else ''}team {team}.")
    return JSONResponse({"removed": True})


def _estimate_endpoint(services: Callable[[], Services | None]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        running = services()
        assert running is not None and running.budgets is not None, "the lifespan has not run"
        record_of(request.scope).route = "estimates.create"
        principal = await authenticate(running, request.headers.items())
        record = record_of(request.scope)
        record.key_id, record.team = principal.key_id, principal.team
        body = await read_body(request)
        if "input_file_id" in body:
            file = await to_thread.run_sync(estimated_file, running.sessions, principal, body)
            if file.provider != "vertex":
                estimate_of = openai_file_estimate(running.budgets, running.catalog, file)
                return JSONResponse(await _estimated(running, principal, estimate_of))
            return JSONResponse(await estimate_job(running, principal, file_estimate_body(file)))
        return JSONResponse(await estimate_body(running, principal, body))
    return endpoint


async def estimate_body(services: Services, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """The dry run of a Vertex create body: the create's checks, the estimate, and the budget it falls under."""
    teams = services.teams
    policy = teams.cached(principal.team)
    if policy is None:
        policy = await to_thread.run_sync(teams.load, principal.team)
    job = normalise_job(body, allowed=policy.allowed_fields)
    model_path = body_model(job) or ""
    if not model_path:
        raise InvalidArgument("An estimate needs the job's model.")
    check_model(principal, model=model_id(model_path), model_projects=(), model_location=None)
    check_job_locations(job, policy)
    return await estimate_job(services, principal, job)


async def estimate_job(services: Services, principal: Principal, job: dict[str, Any]) -> dict[str, Any]:
    """The estimate of a checked job body and the covering budget with the least remaining (whether it fits).

    (The OpenAI door's `{"input_file_id": ...}` form comes here with the Vertex body its batch would run,
    `file_jobs.estimate_body`: its converted file lies in VBP_FILES_BUCKET, outside the team's boundaries.)"""
    gate = services.budgets
    assert gate is not None
    return await _estimated(services, principal, lambda: gate.estimate_job(job))


async def _estimated(services: Services, principal: Principal, estimate_of: Callable[[], Estimate]) -> dict[str, Any]:
    """The estimate `estimate_of` makes (blocking) and the covering budget with the least remaining."""
    gate = services.budgets
    assert gate is not None
    try:
        estimate = await to_thread.run_sync(estimate_of)
    except Unestimable as exc:
        raise FailedPrecondition(f"This batch cannot be estimated: {exc}.") from None
    budgets = await to_thread.run_sync(gate.covering, principal)
    tightest = min(budgets, key=lambda status: status.remaining, default=None)
    view = None if tightest is None else {**tightest.to_json(), "fits": tightest.remaining >= estimate.high_pico}
    return {**estimate.to_json(), "budget": view}
