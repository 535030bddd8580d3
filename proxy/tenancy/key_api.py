"""The admin HTTP API for keys, admin keys only; errors in Google's envelope.

    POST /v1/keys                 {team, name?, projects?, locations?, models?, operations?, admin?, expires_in?}
                                  -> the key's view plus `key`, the secret (shown once)
    GET  /v1/keys                 -> {"keys": [view, ...]}            (no secrets, no hashes)
    GET  /v1/keys/{id}/events     -> {"events": [...]}                (the audit trail of one key)
    POST /v1/keys/{id}:revoke     -> the key's view
    POST /v1/keys/{id}:rotate     {grace_seconds?} -> the key's view plus `key`, the new secret

No key -> 401 UNAUTHENTICATED; a team key -> 403 PERMISSION_DENIED; a bad body or a value out of range -> 400;
an unknown key -> 404; anything unexpected -> 500, logged with its traceback (the gateway's error replies).
Every change is audited with the admin key's id as the actor; the gateway logs every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.clock import utcnow
from proxy.errors import InvalidArgument, NotFound, PermissionDenied
from proxy.json_body import parse_json_body
from proxy.ledger.models import ApiKey
from proxy.ledger.request_log import record_of
from proxy.services import Services
from proxy.tenancy import key_admin
from proxy.tenancy.auth import authenticate
from proxy.tenancy.keys import Principal, list_keys

_MAX_BODY = 64 * 1024
_MAX_LIST, _MAX_ITEM = 100, 200  # scope lists: entries, and characters per entry
_CREATE_FIELDS = {"team", "name", "projects", "locations", "models", "operations", "admin", "expires_in"}

Handler = Callable[[Request, Principal, Services], Awaitable[Response]]


def admin_endpoint(services: Callable[[], Services | None], route: str,
                   handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that only admin keys may call, answering in Google's envelope and logged as `route`."""
    async def endpoint(request: Request) -> Response:
        return await _serve(request, route, handler, services())
    return endpoint


def key_routes(services: Callable[[], Services | None]) -> list[Route]:
    """The routes, for `create_app` to list; `services` gives the running services (set by the lifespan)."""
    def guarded(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return admin_endpoint(services, route, handler)

    return [
        Route("/v1/keys", guarded("keys.list", _list), methods=["GET"]),
        Route("/v1/keys", guarded("keys.create", _create), methods=["POST"]),
        Route("/v1/keys/{key_id}/events", guarded("keys.events", _events), methods=["GET"]),
        Route("/v1/keys/{target}", guarded("keys.action", _action), methods=["POST"]),
    ]


async def _serve(request: Request, route: str, handler: Handler, services: Services | None) -> Response:
    """Authenticate an admin key, name the call on the request's record, run it (errors: the gateway's)."""
    assert services is not None, "the lifespan has not run"
    record = record_of(request.scope)
    record.route = route
    principal = await authenticate(services, request.headers.items())
    record.key_id, record.team = principal.key_id, principal.team
    if not principal.admin:
        raise PermissionDenied("This call needs an admin key.")
    return await handler(request, principal, services)


async def read_body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_BODY:
            raise InvalidArgument(f"The request body is larger than {_MAX_BODY} bytes.")
    body = parse_json_body(raw, empty={})
    if not isinstance(body, dict):
        raise InvalidArgument("The request body must be a JSON object.")
    return body


def _short(text: str) -> str:
    """A caller's string as an error message may quote it: 40 characters at most."""
    return text if len(text) <= 40 else text[:40] + "..."


def _strings(body: dict[str, Any], field: str) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument(f"{field} must be a list of strings.")
    if len(value) > _MAX_LIST or any(len(item) > _MAX_ITEM for item in value):
        raise InvalidArgument(f"{field} may hold at most {_MAX_LIST} entries of at most {_MAX_ITEM} characters.")
    return value


def _expiry(value: object) -> datetime | None:
    """`expires_in`: a duration such as "30d", or a whole number of seconds, up to ten years."""
    if value is None:
        return None
    try:
        return utcnow() + key_admin.bounded_duration(value, field="expires_in", least=timedelta(seconds=1),
                                                     most=key_admin.MAX_LIFETIME)
    except ValueError as exc:
        raise InvalidArgument(f"{exc}.") from None


async def _create(request: Request, principal: Principal, services: Services) -> Response:
    body = await read_body(request)
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise InvalidArgument(f"Unknown field(s): {', '.join(_short(field) for field in unknown[:10])}.")
    team, name, admin = body.get("team"), body.get("name", ""), body.get("admin", False)
    if not isinstance(team, str) or not isinstance(name, str) or not isinstance(admin, bool):
        raise InvalidArgument("team (a string) is required; name must be a string and admin a boolean.")
    if len(team) > _MAX_ITEM:
        raise InvalidArgument(f"team {_short(team)!r} is longer than {_MAX_ITEM} characters.")
    fields = {field: _strings(body, field) for field in ("projects", "locations", "models", "operations")}
    expires_at = _expiry(body.get("expires_in"))

    def write() -> dict[str, Any]:
        with services.sessions.begin() as session:
            key, secret = key_admin.issue_key(session, actor=principal.key_id, team=team, name=name, admin=admin,
                                              expires_at=expires_at, **fields)
            return {**key_admin.key_view(key), "key": secret}

    try:
        return JSONResponse(await to_thread.run_sync(write))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


async def _list(request: Request, principal: Principal, services: Services) -> Response:
    def read() -> list[dict[str, Any]]:
        now = utcnow()
        with services.sessions() as session:
            return [key_admin.key_view(key, now=now) for key in list_keys(session)]

    return JSONResponse({"keys": await to_thread.run_sync(read)})


async def _events(request: Request, principal: Principal, services: Services) -> Response:
    key_id = request.path_params["key_id"]

    def read() -> list[dict[str, Any]] | None:
        with services.sessions() as session:
            if session.get(ApiKey, key_id) is None:
                return None
            return [key_admin.event_view(event) for event in key_admin.list_events(session, key_id=key_id)]

    events = await to_thread.run_sync(read)
    if events is None:
        raise NotFound(f"There is no key {key_id}.")
    return JSONResponse({"events": events})


async def _action(request: Request, principal: Principal, services: Services) -> Response:
    key_id, _, action = request.path_params["target"].partition(":")
    if action not in ("revoke", "rotate"):
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
    body = await read_body(request)
    if action == "revoke":
        if body:
            raise InvalidArgument("revoke takes no fields.")

        def revoke() -> dict[str, Any] | None:
            with services.sessions.begin() as session:
                key = key_admin.revoke(session, actor=principal.key_id, key_id=key_id)
                return key_admin.key_view(key) if key is not None else None

        view = await to_thread.run_sync(revoke)
        if view is None:
            raise NotFound(f"There is no key {key_id}.")
        return JSONResponse(view)

    grace = body.get("grace_seconds", key_admin.DEFAULT_GRACE_SECONDS)
    if set(body) - {"grace_seconds"} or not isinstance(grace, int) or isinstance(grace, bool):
        raise InvalidArgument("rotate takes one optional field: grace_seconds, a whole number of seconds.")
    try:
        grace_seconds = key_admin.bounded_duration(grace, field="grace_seconds", least=timedelta(0),
                                                   most=key_admin.MAX_GRACE).total_seconds()
    except ValueError as exc:
        raise InvalidArgument(f"{exc}.") from None

    def rotate() -> dict[str, Any] | None:
        with services.sessions.begin() as session:
            rotated = key_admin.rotate(session, actor=principal.key_id, key_id=key_id, grace_seconds=grace_seconds)
            return {**key_admin.key_view(rotated[0]), "key": rotated[1]} if rotated is not None else None

    view = await to_thread.run_sync(rotate)
    if view is None:
        raise NotFound(f"There is no active key {key_id} (unknown, revoked or expired).")
    return JSONResponse(view)
