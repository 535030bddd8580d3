"""The emulator's ASGI app: Vertex `batchPredictionJobs` (v1 and v1beta1), `POST /token`, and `/_emulator/*`.

Every Vertex call is logged, delayed by the `latency` fault, authenticated (a bearer token from `/token`, or a
self-signed JWT of the generated service account), possibly answered by an injected error, then served.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.emulator.connection_faults import ConnectionReset
from proxy.emulator.faults import Faults, Injection
from proxy.emulator.jobs import Job, now_utc, project_number, resource_id
from proxy.emulator.listing import apply_read_mask, page_size, parse_filter, parse_read_mask, select_page
from proxy.emulator.oauth import OAuthError
from proxy.emulator.openai_api.api import azure_routes, openai_routes
from proxy.emulator.playback import play
from proxy.emulator.predictions import rfc3339
from proxy.emulator.state import MAX_LOGGED_BODY, EmulatorState
from proxy.emulator.validation import validate_create
from proxy.errors import ApiError, Internal, InvalidArgument, MethodNotAllowed, NotFound, Unauthenticated
from proxy.providers.vertex import filters
from proxy.providers.vertex.resources import API_VERSIONS, valid_location, valid_project

log = logging.getLogger(__name__)

_COLLECTION = "/{version}/projects/{project}/locations/{location}/batchPredictionJobs"
_CREDENTIALS_HELP = ("Expected OAuth 2 access token, login cookie or other valid authentication credential. "
                     "See https://developers.google.com/identity/sign-in/web/devconsole-project.")


def error_response(error: ApiError) -> JSONResponse:
    """An error in Google's envelope."""
    return JSONResponse(error.envelope(), status_code=error.http_status, headers=error.headers)


def wants_int_enums(query_string: str) -> bool:
    """`?$alt=json;enum-encoding=int` (google-cloud-aiplatform's REST transport) asks for enums as numbers."""
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        if key == "$alt" and "enum-encoding=int" in value.split(";"):
            return True
    return False


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("Invalid JSON payload received. Unexpected token.") from None


def _vertex_method(request: Request) -> tuple[str, str | None]:
    """The API method a request calls, and the job id for the per-job methods."""
    verb = request.method
    job = request.path_params.get("job")
    if job is None:
        methods = {"GET": "list", "POST": "create"}
    elif job.endswith(":cancel"):
        job, methods = job[: -len(":cancel")], {"POST": "cancel"}
    else:
        methods = {"GET": "get", "DELETE": "delete"}
    if verb not in methods:
        raise MethodNotAllowed(f"Method {verb} is not allowed on {request.url.path}.")
    return methods[verb], job


class VertexApi:
    """The five `batchPredictionJobs` methods over one EmulatorState."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        entry: dict[str, Any] = {
            "api": "vertex", "method": request.method, "path": request.url.path,
            "query": unquote(request.url.query), "headers": dict(request.headers.items()),
            "body": raw[:MAX_LOGGED_BODY].decode(errors="replace"), "status": None,
            "time": rfc3339(datetime.now(UTC)),
        }
        self.state.log_request(entry)
        try:
            response = await self._serve(request, raw)
        except ApiError as error:
            response = error_response(error)
        except Exception as exc:
            log.exception("emulator error on %s %s", request.method, request.url.path)
            response = error_response(Internal(f"Internal error: {exc}"))
        entry["status"] = None if isinstance(response, ConnectionReset) else response.status_code  # None: cut
        return response

    async def _serve(self, request: Request, raw: bytes) -> Response:
        faults = self.state.faults.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        self._authenticate(request)
        method, job_id = _vertex_method(request)
        injected = self.state.faults.injected(method, path=request.url.path)
        if injected is None:
            return await self._served(request, raw, method, job_id)
        return await _play(injected, lambda: self._served(request, raw, method, job_id))

    async def _served(self, request: Request, raw: bytes, method: str, job_id: str | None) -> Response:
        params = request.path_params
        version, project, location = params["version"], params["project"], params["location"]
        if version not in API_VERSIONS:
            raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
        if not valid_project(project) or not valid_location(location):
            raise InvalidArgument(f"Invalid resource name: projects/{project}/locations/{location}.")
        enum_int = wants_int_enums(request.url.query)
        if method == "create":
            return self._create(project, location, _json_body(raw), enum_int)
        if method == "list":
            return self._list(project, location, request, enum_int)
        assert job_id is not None
        if method == "get":
            job = self.state.jobs.get(project, location, job_id)
            return JSONResponse(self.state.jobs.snapshot(job, enum_int=enum_int))
        if method == "cancel":
            body = _json_body(raw)
            if body is not None and not isinstance(body, dict):
                raise InvalidArgument("Invalid JSON payload received. The body must be an object.")
            self.state.jobs.cancel(project, location, job_id)
            return JSONResponse({})
        job = self.state.jobs.delete(project, location, job_id)
        return JSONResponse(_delete_operation(job, version))

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(f"Request is missing required authentication credential. {_CREDENTIALS_HELP}")
        if not self.state.tokens.valid(token.strip()):
            raise Unauthenticated(f"Request had invalid authentication credentials. {_CREDENTIALS_HELP}")

    def _create(self, project: str, location: str, body: Any, enum_int: bool) -> Response:
        if body is None:
            raise InvalidArgument("Invalid JSON payload received. The body must be a BatchPredictionJob object.")
        spec, model = validate_create(body, models=self.state.models)
        job = Job(project_number=project_number(project), location=location, job_id=resource_id(), spec=spec,
                  model_id=model, faults=self.state.faults.faults.for_job(), job_seconds=self.state.job_seconds)
        self.state.jobs.add(job)
        snapshot = self.state.jobs.snapshot(job, enum_int=enum_int)
        self.state.runner.submit(job)
        return JSONResponse(snapshot)

    def _list(self, project: str, location: str, request: Request, enum_int: bool) -> Response:
        query = request.query_params
        tree = parse_filter(query.get("filter"))
        size = page_size(query.get("pageSize"))
        mask = parse_read_mask(query.get("readMask"))
        views: dict[str, dict[str, Any]] = {}

        def matches(job: Job) -> bool:
            views[job.job_id] = self.state.jobs.snapshot(job)
            return filters.evaluate(tree, views[job.job_id])

        page, next_token = select_page(self.state.jobs.in_location(project, location), token=query.get("pageToken"),
                                       size=size, matches=matches)
        body: dict[str, Any] = {"batchPredictionJobs": [
            apply_read_mask(self.state.jobs.snapshot(job, enum_int=enum_int) if enum_int else views[job.job_id], mask)
            for job in page
        ]}
        if next_token:
            body["nextPageToken"] = next_token
        return JSONResponse(body)


async def _play(injected: Injection, serve: Callable[[], Awaitable[Response]]) -> Response:
    """Answer a Vertex or token call as its injected fault says (errors in Google's envelope)."""

    async def served() -> Response:
        try:
            return await serve()
        except ApiError as error:
            return error_response(error)

    return await play(injected, served, error_response)


def _delete_operation(job: Job, version: str) -> dict[str, Any]:
    stamp = rfc3339(now_utc())
    return {
        "name": f"projects/{job.project_number}/locations/{job.location}/operations/{resource_id()}",
        "metadata": {
            "@type": f"type.googleapis.com/google.cloud.aiplatform.{version}.DeleteOperationMetadata",
            "genericMetadata": {"createTime": stamp, "updateTime": stamp},
        },
        "done": True,
        "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    }


def create_app(state: EmulatorState) -> Starlette:
    """The emulator's routes, in the order they are matched."""
    vertex = VertexApi(state)

    async def token(request: Request) -> Response:
        raw = await request.body()
        entry: dict[str, Any] = {"api": "token", "method": request.method, "path": request.url.path, "query": "",
                 "headers": dict(request.headers.items()), "body": "", "status": None,
                 "time": rfc3339(datetime.now(UTC))}
        state.log_request(entry)

        async def exchange() -> Response:
            try:
                form = dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
                return JSONResponse(state.tokens.exchange(form), headers={"Cache-Control": "no-store"})
            except OAuthError as error:
                return JSONResponse(error.body(), status_code=error.http_status)

        injected = state.faults.injected("token", path=request.url.path)
        response = await (exchange() if injected is None else _play(injected, exchange))
        entry["status"] = None if isinstance(response, ConnectionReset) else response.status_code
        return response

    async def get_faults(request: Request) -> Response:
        return JSONResponse(state.faults.faults.to_json())

    async def set_faults(request: Request) -> Response:
        try:
            body = _json_body(await request.body())
            faults = state.set_faults(Faults.from_json(body if body is not None else {}))
        except ApiError as error:
            return error_response(error)
        return JSONResponse(faults.to_json())

    async def requests(request: Request) -> Response:
        return JSONResponse({"requests": state.request_log})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({})

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return error_response(MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."))
        return error_response(NotFound(f"The requested URL {request.url.path} was not found on this server."))

    verbs = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    return Starlette(
        routes=[
            Route(_COLLECTION, vertex.handle, methods=verbs),
            Route(_COLLECTION + "/{job}", vertex.handle, methods=verbs),
            *openai_routes(state.openai),
            *azure_routes(state.azure),
            Route("/token", token, methods=["POST"]),
            Route("/_emulator/faults", get_faults, methods=["GET"]),
            Route("/_emulator/faults", set_faults, methods=["POST"]),
            Route("/_emulator/requests", requests, methods=["GET"]),
            Route("/_emulator/reset", reset, methods=["POST"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
