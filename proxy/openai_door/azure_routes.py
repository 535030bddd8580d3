"""The OpenAI door in Azure OpenAI's shapes, for teams whose code uses the `AzureOpenAI` client.

`AzureOpenAI(azure_endpoint=<proxy>, api_key=<proxy key>, api_version=...)` calls `{proxy}/openai/files|batches...
?api-version=...` with the key in the `api-key` header; the v1 form `{proxy}/openai/v1/files|batches...` (a plain
`OpenAI` client with `base_url=<proxy>/openai/v1`) takes no api-version. Both answer exactly as `/v1/files|batches`
(the same handlers, the same objects and ids, errors in OpenAI's envelope), except as Azure does:
- the api-version form needs `api-version`: none is a 404 "Resource not found" (code "404"), one Azure does not
  serve for batches a 400 "API version not supported" (code "BadRequest");
- a batch create answers 201, not 200.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import InvalidArgument, NotFound
from proxy.openai_door.routes import Endpoint, openai_routes
from proxy.services import Services

# The api-versions with files and batches: GA 2024-10-21, and the previews that have them.
AZURE_API_VERSIONS = ("2024-10-21", "2024-07-01-preview", "2025-03-01-preview", "2025-04-01-preview")
VERSIONED_PREFIX, V1_PREFIX = "/openai", "/openai/v1"


def check_api_version(request: Request) -> None:
    """Azure's answers to a missing or unknown `api-version`."""
    version = request.query_params.get("api-version")
    if version is None:
        raise NotFound("Resource not found", code="404")
    if version not in AZURE_API_VERSIONS:
        raise InvalidArgument(f"API version not supported: {version[:40]!r} (this proxy serves "
                              f"{', '.join(AZURE_API_VERSIONS)})", param="api-version", code="BadRequest")


def azure_shape(*, versioned: bool) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint of the door: the api-version check first, Azure's 201 on a batch create after."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        async def serve(request: Request) -> Response:
            if versioned:
                check_api_version(request)
            response = await endpoint(request)
            if request.method == "POST" and request.url.path.endswith("/batches") and response.status_code == 200:
                response.status_code = 201
            return response
        return serve

    return wrap


def azure_routes(services: Callable[[], Services | None]) -> list[Route]:
    """`/openai/files|batches...?api-version=` and `/openai/v1/files|batches...`, for the app's route list."""
    return [*openai_routes(services, prefix=V1_PREFIX, wrap=azure_shape(versioned=False)),
            *openai_routes(services, prefix=VERSIONED_PREFIX, wrap=azure_shape(versioned=True))]
