"""The admin HTTP API for team policies, admin keys only; errors in Google's envelope.

    GET   /v1/teams               -> {"teams": [view, ...]}   (every team with keys or a policy)
    GET   /v1/teams/{team}        -> view                     (a team without a policy of its own: the templates)
    PATCH /v1/teams/{team}        {gcs_prefixes?, bq_datasets?, allowed_fields?} -> view
                                  (each list given replaces the team's; lists not given stay)
    PUT   /v1/teams/{team}        the same fields; a list not given becomes empty

A view is `{team, gcs_prefixes, bq_datasets, allowed_fields, effective_gcs_prefixes, updated_at, updated_by}`.
A change reaches every replica within VBP_TEAM_CACHE_SECONDS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.errors import InvalidArgument
from proxy.services import Services
from proxy.tenancy import team_admin
from proxy.tenancy.key_api import admin_endpoint, read_body
from proxy.tenancy.keys import Principal

_LISTS = ("gcs_prefixes", "bq_datasets", "allowed_fields")
_MAX_ENTRIES, _MAX_CHARS = 100, 1100  # a gs:// URI of the longest bucket and a long folder fits


def team_routes(services: Callable[[], Services | None]) -> list[Route]:
    """The routes, for `create_app` to list."""
    return [
        Route("/v1/teams", admin_endpoint(services, "teams.list", _list), methods=["GET"]),
        Route("/v1/teams/{team}", admin_endpoint(services, "teams.get", _show), methods=["GET"]),
        Route("/v1/teams/{team}", admin_endpoint(services, "teams.set", _set), methods=["PATCH", "PUT"]),
    ]


async def _list(request: Request, principal: Principal, services: Services) -> Response:
    def read() -> list[dict[str, Any]]:
        with services.sessions() as session:
            return team_admin.list_teams(session, templates=services.settings.team_gcs_prefixes)

    return JSONResponse({"teams": await to_thread.run_sync(read)})


async def _show(request: Request, principal: Principal, services: Services) -> Response:
    def read() -> dict[str, Any]:
        with services.sessions() as session:
            return team_admin.show_team(session, team=request.path_params["team"],
                                        templates=services.settings.team_gcs_prefixes)

    try:
        return JSONResponse(await to_thread.run_sync(read))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


async def _set(request: Request, principal: Principal, services: Services) -> Response:
    body = await read_body(request)
    unknown = sorted(set(body) - set(_LISTS))
    if unknown:
        raise InvalidArgument(f"Unknown field(s): {', '.join(unknown)}; a team has {', '.join(_LISTS)}.")
    lists: dict[str, list[str] | None] = {}
    for name in _LISTS:
        value = body.get(name, [] if request.method == "PUT" else None)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidArgument(f"{name} must be a list of strings.")
        if value is not None and (len(value) > _MAX_ENTRIES or any(len(v) > _MAX_CHARS for v in value)):
            raise InvalidArgument(f"{name} takes at most {_MAX_ENTRIES} entries of at most {_MAX_CHARS} characters.")
        lists[name] = value
    team = request.path_params["team"]

    def write() -> dict[str, Any]:
        with services.sessions.begin() as session:
            row = team_admin.set_team(session, actor=principal.key_id, team=team, **lists)
            return team_admin.team_view(team, row, services.settings.team_gcs_prefixes)

    try:
        return JSONResponse(await to_thread.run_sync(write))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
