"""The OpenAI door's errors: OpenAI's envelope on its paths (Google's everywhere else), with the type and code the
`openai` SDK expects by status, and Vertex's error replies translated, never passed on."""

from __future__ import annotations

import json

import pytest

from proxy.errors import (
    ApiError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from proxy.gateway.dialects import dialect_for, error_reply, google, openai
from proxy.openai_door.upstream_errors import translate


@pytest.mark.parametrize("path", ["/v1/files", "/v1/files/file-abc/content", "/v1/batches", "/v1/batches/b/cancel"])
def test_the_door_speaks_openais_dialect(path: str) -> None:
    assert dialect_for({"path": path, "raw_path": path.encode()}) is openai


@pytest.mark.parametrize("path", ["/v1/keys", "/v1/costs", "/v1/projects/p/locations/l/batchPredictionJobs"])
def test_other_routes_keep_googles(path: str) -> None:
    assert dialect_for({"path": path, "raw_path": path.encode()}) is google


@pytest.mark.parametrize(("error", "status", "kind", "code"), [
    (InvalidArgument("bad", param="purpose"), 400, "invalid_request_error", None),
    (Unauthenticated("no key"), 401, "invalid_request_error", "invalid_api_key"),
    (PermissionDenied("scope"), 403, "permission_error", None),
    (NotFound("No such File object: file-x", param="id"), 404, "invalid_request_error", None),
    (ResourceExhausted("slow down", headers={"retry-after": "30"}), 429, "rate_limit_error", "rate_limit_exceeded"),
    (Internal("oops"), 500, "server_error", None),
    (Unavailable("The OpenAI door is off"), 503, "server_error", None),
])
def test_the_envelope_by_status(error: ApiError, status: int, kind: str, code: str | None) -> None:
    start, body = error_reply({"path": "/v1/files", "raw_path": b"/v1/files"}, error)
    assert start["status"] == status
    assert json.loads(body["body"]) == {"error": {"message": error.message, "type": kind, "param": error.param,
                                                  "code": code}}
    assert dict(start["headers"]).get(b"retry-after") == (b"30" if status == 429 else None)


def _google(code: int, status: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()


def test_vertex_errors_are_translated_with_the_sdks_statuses() -> None:
    unknown = translate(404, _google(404, "NOT_FOUND", "The PublisherModel gemini-x does not exist."), [],
                        doing="create the batch's job", create=True)
    assert (type(unknown), unknown.param, unknown.code) == (InvalidArgument, "model", "model_not_found")
    assert unknown.message == ("Vertex AI could not create the batch's job: The PublisherModel gemini-x does not "
                               "exist.")
    busy = translate(429, _google(429, "RESOURCE_EXHAUSTED", "Quota"), [("Retry-After", "12")], doing="x")
    assert (type(busy), busy.headers) == (ResourceExhausted, {"retry-after": "12"})
    assert translate(429, b"", [], doing="x").headers == {"retry-after": "30"}
    refused = translate(403, _google(403, "PERMISSION_DENIED", "aiplatform.batchPredictionJobs.create denied"), [],
                        doing="x")
    assert (type(refused), refused.http_status) == (Internal, 500)  # the proxy's credentials: not the caller's to fix
    assert type(translate(504, b"<html>", [], doing="x")) is DeadlineExceeded
    assert translate(502, b"<html>gw</html>", [], doing="x").message == "Vertex AI could not x: <html>gw</html>"
