"""The OpenAI stand-in and each Azure resource as one `StandIn`: logging, latency, auth, api-version, injected
faults, then the files and batches calls; and the Starlette routes that reach them.

OpenAI:  {base}/openai-api/v1/files|batches...                    (Authorization: Bearer KEY)
Azure:   {base}/azure/{resource}/openai/files|batches...?api-version=...   and   .../openai/v1/files|batches...
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from proxy.emulator.connection_faults import ConnectionReset
from proxy.emulator.openai_api import files
from proxy.emulator.openai_api.auth import check_azure, check_openai
from proxy.emulator.openai_api.batches import Batch, BatchStore
from proxy.emulator.openai_api.errors import OpenAIError, injected, invalid
from proxy.emulator.openai_api.flavor import AZURE_API_VERSIONS, Flavor
from proxy.emulator.openai_api.lines import enqueued_tokens, read_input
from proxy.emulator.openai_api.runner import BatchRunner
from proxy.emulator.playback import play
from proxy.emulator.predictions import rfc3339

if TYPE_CHECKING:
    from proxy.emulator.state import EmulatorState

log = logging.getLogger(__name__)

VERBS = ["GET", "POST", "DELETE", "PUT", "PATCH"]
# (collection, HTTP verb) -> the call, and the fault-rule method that names it.
CALLS = {
    ("files", "GET"): ("files.list", "list"), ("files", "POST"): ("files.create", "create"),
    ("file", "GET"): ("files.get", "get"), ("file", "DELETE"): ("files.delete", "delete"),
    ("content", "GET"): ("files.content", "get"),
    ("batches", "GET"): ("batches.list", "list"), ("batches", "POST"): ("batches.create", "create"),
    ("batch", "GET"): ("batches.get", "get"), ("cancel", "POST"): ("batches.cancel", "cancel"),
}
PATHS = {"files": "/files", "file": "/files/{file_id}", "content": "/files/{file_id}/content",
         "batches": "/batches", "batch": "/batches/{batch_id}", "cancel": "/batches/{batch_id}/cancel"}
BATCH_LIST_LIMIT = (1, 100, 20)
QUOTA_MODES = ("fail-fast", "fail-batch")


class StandIn:
    """One API: the OpenAI stand-in, or one Azure OpenAI resource."""

    def __init__(self, flavor: Flavor, host: EmulatorState, *, key: str, token_quota: int | None = None,
                 quota_mode: str = "fail-fast") -> None:
        self.flavor = flavor
        self.host = host
        self.key = key
        self.token_quota = token_quota
        self.quota_mode = quota_mode
        self.files = files.FileStore(flavor)
        self.batches = BatchStore(flavor)
        self.runner = BatchRunner(self.batches, self.files)

    async def handle(self, request: Request, collection: str, *, versioned: bool) -> Response:
        """Serve one call; every answer, errors included, is in this API's dialect."""
        raw = await request.body()
        entry: dict[str, Any] = {
            "api": self.flavor.name if self.flavor.resource is None else f"azure/{self.flavor.resource}",
            "method": request.method, "path": request.url.path, "query": unquote(request.url.query),
            "headers": dict(request.headers.items()), "body": raw[:64 * 1024].decode(errors="replace"),
            "status": None, "time": rfc3339(datetime.now(UTC)),
        }
        self.host.log_request(entry)
        response = await self._answer(request, collection, versioned)
        entry["status"] = None if isinstance(response, ConnectionReset) else response.status_code
        return response

    async def _answer(self, request: Request, collection: str, versioned: bool) -> Response:
        try:
            if self.host.faults.faults.latency:
                await asyncio.sleep(self.host.faults.faults.latency)
            if versioned:
                _check_api_version(request)
            if self.flavor.azure:
                check_azure(request, self.key, self.host.tokens)
            else:
                check_openai(request, self.key)
            call = CALLS.get((collection, request.method))
            if call is None:
                raise OpenAIError(405, f"Method {request.method} is not allowed on {request.url.path}.")
            name, method = call
        except OpenAIError as error:
            return error.response()
        fault = self.host.faults.injected(method, path=request.url.path, google=False)

        async def serve() -> Response:
            try:
                return await self._serve(name, request)
            except OpenAIError as error:
                return error.response()
            except Exception as exc:
                log.exception("emulator error on %s %s", request.method, request.url.path)
                return OpenAIError(500, f"Internal error: {exc}", type="server_error").response()

        if fault is None:
            return await serve()
        return await play(fault, serve, lambda error: injected(error, azure=self.flavor.azure).response())

    async def _serve(self, name: str, request: Request) -> Response:
        params = request.path_params
        if name == "files.create":
            return await files.upload(self.files, request)
        if name == "files.list":
            return files.listing(self.files, request)
        if name == "files.get":
            return JSONResponse(self.files.get(params["file_id"]).to_json())
        if name == "files.content":
            return files.content(self.files, params["file_id"])
        if name == "files.delete":
            return files.delete(self.files, params["file_id"])
        if name == "batches.create":
            return self._create(await request.body())
        if name == "batches.list":
            query = request.query_params
            low, high, default = BATCH_LIST_LIMIT
            limit = files.int_param(query.get("limit"), "limit", default, low, high)
            return JSONResponse(files.page(self.batches.newest_first(), after=query.get("after"), limit=limit))
        if name == "batches.get":
            return JSONResponse(self.batches.snapshot(self.batches.get(params["batch_id"])))
        batch = self.batches.cancel(params["batch_id"])
        return JSONResponse(self.batches.snapshot(batch))

    def _create(self, raw: bytes) -> Response:
        body = _json_object(raw)
        file_id, endpoint, window = body.get("input_file_id"), body.get("endpoint"), body.get("completion_window")
        if not isinstance(file_id, str) or not file_id:
            raise invalid("Missing required parameter: 'input_file_id'.", "input_file_id")
        if endpoint not in self.flavor.endpoints:
            raise invalid(f"Invalid value for 'endpoint': {endpoint!r}; expected one of "
                          f"{', '.join(self.flavor.endpoints)}.", "endpoint")
        if window != "24h":
            raise invalid(f"Invalid value for 'completion_window': {window!r}; only '24h' is supported.",
                          "completion_window")
        metadata = _metadata(body.get("metadata"))
        stored = self.files.get(file_id)
        if stored.purpose != "batch":
            raise invalid(f"Invalid 'input_file_id': the purpose of {file_id} is '{stored.purpose}', not 'batch'.",
                          "input_file_id")
        read = read_input(stored.data, flavor=self.flavor, endpoint=endpoint)
        batch = Batch(id=self.flavor.batch_id(), endpoint=endpoint, input_file_id=file_id, completion_window=window,
                      metadata=metadata, faults=self.host.faults.faults.for_job(), job_seconds=self.host.job_seconds,
                      deployment=read.model)
        model = self.flavor.model_behind(read.model or "")
        headers: dict[str, str] = {}
        if self.flavor.azure and model is not None and read.model is not None:
            batch.enqueued_tokens = enqueued_tokens(read, model)
            admitted, enqueued = self.batches.admit(batch, quota=self.token_quota)
            if not admitted:
                message = (f"The number of enqueued tokens has surpassed the configured limit of {self.token_quota} "
                           f"for the deployment '{read.model}'. Please wait for running jobs to finish, or ask for a "
                           f"higher limit. This batch would enqueue {batch.enqueued_tokens} tokens; {enqueued} are "
                           "already enqueued.")
                if self.quota_mode == "fail-fast":
                    raise OpenAIError(400, message, code="token_limit_exceeded")
                batch.enqueued_tokens = 0
                self.batches.add(batch)
                self.batches.move(batch, "failed", errors=[{"code": "token_limit_exceeded", "message": message,
                                                            "param": None, "line": None}])
            headers = {"deployment-enqueued-tokens": str(enqueued),
                       "deployment-maximum-enqueued-tokens": str(self.token_quota)}
        else:
            self.batches.add(batch)
        snapshot = self.batches.snapshot(batch)
        if batch.status == "validating":
            self.runner.submit(batch)
        return JSONResponse(snapshot, status_code=self.flavor.create_status, headers=headers)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        body = None
    if not isinstance(body, dict):
        raise invalid("We could not parse the JSON body of your request. The body must be a JSON object.")
    return body


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (not isinstance(value, dict) or len(value) > 16
            or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                       for k, v in value.items())):
        raise invalid("Invalid 'metadata': at most 16 string pairs, keys up to 64 and values up to 512 characters.",
                      "metadata")
    return dict(value)


def _check_api_version(request: Request) -> None:
    """Azure's answers: no api-version is a 404 'Resource not found', an unknown one a 400."""
    version = request.query_params.get("api-version")
    if version is None:
        raise OpenAIError(404, "Resource not found", code="404", azure_shape=True)
    if version not in AZURE_API_VERSIONS:
        raise OpenAIError(400, "API version not supported", code="BadRequest", azure_shape=True)


def openai_routes(standin: StandIn, prefix: str = "/openai-api/v1") -> list[BaseRoute]:
    """The OpenAI stand-in's routes."""
    return [Route(prefix + path, _endpoint(lambda request: standin, collection, versioned=False), methods=VERBS)
            for collection, path in PATHS.items()]


def azure_routes(resources: dict[str, StandIn]) -> list[BaseRoute]:
    """Each Azure resource's routes, in the api-version form and the v1 form."""

    def find(request: Request) -> StandIn:
        standin = resources.get(request.path_params["resource"])
        if standin is None:
            raise OpenAIError(404, "Resource not found", code="404", azure_shape=True)
        return standin

    routes: list[BaseRoute] = []
    for prefix, versioned in (("/azure/{resource}/openai", True), ("/azure/{resource}/openai/v1", False)):
        routes += [Route(prefix + path, _endpoint(find, collection, versioned=versioned), methods=VERBS)
                   for collection, path in PATHS.items()]
    return routes


def _endpoint(find: Callable[[Request], StandIn], collection: str, *, versioned: bool) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        try:
            standin = find(request)
        except OpenAIError as error:
            return error.response()
        return await standin.handle(request, collection, versioned=versioned)

    return endpoint
