"""The admin HTTP API for webhooks, admin keys only; errors in Google's envelope.

    GET    /v1/webhooks[?team=T]                         -> {"webhooks": [view, ...]}
    POST   /v1/webhooks  {team, url, events?}            -> view + "secret" (shown this once)
    GET    /v1/webhooks/deliveries[?failed=true&team=T&endpoint=ID&limit=N] -> {"deliveries": [delivery, ...]}
    POST   /v1/webhooks/deliveries/{id}/redeliver        -> delivery (pending again, same webhook-id)
    GET    /v1/webhooks/{id}                             -> view
    DELETE /v1/webhooks/{id}                             -> {}

A view is `{id, team, url, events, created_at, created_by, removed_at}`; a delivery is a row of
`registration.delivery_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.errors import FailedPrecondition, InvalidArgument, NotFound
from proxy.ledger.models import WebhookEndpoint
from proxy.services import Services
from proxy.tenancy.key_api import admin_endpoint, read_body
from proxy.tenancy.keys import Principal
from proxy.webhooks import registration
from proxy.webhooks.delivery import url_policy

_FIELDS = {"team", "url", "events"}
MAX_LIMIT = 1000


def webhook_routes(services: Callable[[], Services | None]) -> list[Route]:
    """The routes, for `create_app` to list (the delivery log's before `{id}`, which would swallow it)."""
    return [
        Route("/v1/webhooks", admin_endpoint(services, "webhooks.list", _list), methods=["GET"]),
        Route("/v1/webhooks", admin_endpoint(services, "webhooks.add", _add), methods=["POST"]),
        Route("/v1/webhooks/deliveries", admin_endpoint(services, "webhooks.deliveries", _deliveries),
              methods=["GET"]),
        Route("/v1/webhooks/deliveries/{delivery_id:int}/redeliver",
              admin_endpoint(services, "webhooks.redeliver", _redeliver), methods=["POST"]),
        Route("/v1/webhooks/{endpoint_id}", admin_endpoint(services, "webhooks.get", _show), methods=["GET"]),
        Route("/v1/webhooks/{endpoint_id}", admin_endpoint(services, "webhooks.remove", _remove),
              methods=["DELETE"]),
    ]


async def _list(request: Request, principal: Principal, services: Services) -> Response:
    def read() -> list[dict[str, Any]]:
        with services.sessions() as session:
            found = registration.list_endpoints(session, team=request.query_params.get("team") or None)
            return [registration.endpoint_view(endpoint) for endpoint in found]

    return JSONResponse({"webhooks": await to_thread.run_sync(read)})


async def _add(request: Request, principal: Principal, services: Services) -> Response:
    body = await read_body(request)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidArgument(f"Unknown field(s): {', '.join(unknown)}; a webhook has team, url and events.")
    team, url, events = body.get("team"), body.get("url"), body.get("events", [])
    if not isinstance(team, str) or not isinstance(url, str):
        raise InvalidArgument("team and url are required strings.")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise InvalidArgument("events must be a list of event types.")

    def write() -> dict[str, Any]:
        with services.sessions.begin() as session:
            endpoint, secret = registration.add_endpoint(session, team=team, url=url, events=events,
                                                         actor=principal.key_id,
                                                         policy=url_policy(services.settings))
            return {**registration.endpoint_view(endpoint), "secret": secret}

    try:
        return JSONResponse(await to_thread.run_sync(write))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


async def _show(request: Request, principal: Principal, services: Services) -> Response:
    endpoint_id = request.path_params["endpoint_id"]

    def read() -> dict[str, Any] | None:
        with services.sessions() as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            return None if endpoint is None else registration.endpoint_view(endpoint)

    view = await to_thread.run_sync(read)
    if view is None:
        raise NotFound(f"Webhook {endpoint_id} not found.")
    return JSONResponse(view)


async def _remove(request: Request, principal: Principal, services: Services) -> Response:
    endpoint_id = request.path_params["endpoint_id"]

    def write() -> bool:
        with services.sessions.begin() as session:
            return registration.remove_endpoint(session, endpoint_id=endpoint_id)

    if not await to_thread.run_sync(write):
        raise NotFound(f"Webhook {endpoint_id} not found.")
    return JSONResponse({})


async def _deliveries(request: Request, principal: Principal, services: Services) -> Response:
    query = request.query_params
    failed = query.get("failed", "false").lower()
    if failed not in ("true", "false"):
        raise InvalidArgument("failed must be true or false.")
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise InvalidArgument("limit must be a whole number.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}.")

    def read() -> list[dict[str, Any]]:
        with services.sessions() as session:
            return registration.list_deliveries(session, failed_only=failed == "true", limit=limit,
                                                team=query.get("team") or None,
                                                endpoint_id=query.get("endpoint") or None)

    return JSONResponse({"deliveries": await to_thread.run_sync(read)})


async def _redeliver(request: Request, principal: Principal, services: Services) -> Response:
    delivery_id = int(request.path_params["delivery_id"])

    def write() -> dict[str, Any] | None:
        with services.sessions.begin() as session:
            return registration.redeliver(session, delivery_id=delivery_id)

    try:
        view = await to_thread.run_sync(write)
    except ValueError as exc:
        raise FailedPrecondition(str(exc)) from None
    if view is None:
        raise NotFound(f"Delivery {delivery_id} not found.")
    return JSONResponse(view)
