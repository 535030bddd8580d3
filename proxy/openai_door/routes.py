"""The OpenAI door's routes, for `create_app` to list (`openai_routes`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import NotFound
from proxy.openai_door import batches_api, files_api
from proxy.openai_door.door import Door
from proxy.services import Services

Handler = Callable[[Request, Door], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
CONTENT = "/content"


def openai_routes(services: Callable[[], Services | None], *, prefix: str = "/v1",
                  wrap: Callable[[Endpoint], Endpoint] | None = None) -> list[Route]:
    """`/v1/files*` and `/v1/batches*`; `services` gives the running services (set by the lifespan).

    The same routes under another `prefix`, each endpoint passed through `wrap`, are the door in another API's
    shape (`proxy.openai_door.azure_routes`)."""
    doors: list[Door] = []

    def door() -> Door:
        running = services()
        assert running is not None, "the lifespan has not run"
        if not doors or doors[0].services is not running:
            doors[:] = [Door(running)]
        return doors[0]

    def endpoint(handler: Handler) -> Endpoint:
        async def serve(request: Request) -> Response:
            return await handler(request, door())
        return serve if wrap is None else wrap(serve)

    async def file_get(request: Request, door: Door) -> Response:
        # `{file_id:path}`: a gs:// file id decoded by the server has slashes; `.../content` is its content.
        file_id = request.path_params["file_id"]
        if file_id.endswith(CONTENT):
            request.path_params["file_id"] = file_id[:-len(CONTENT)]
            return await files_api.content(request, door)
        return await files_api.retrieve(request, door)

    async def file_delete(request: Request, door: Door) -> Response:
        if request.path_params["file_id"].endswith(CONTENT):
            raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
        return await files_api.delete(request, door)

    return [
        Route(prefix + "/files", endpoint(files_api.create), methods=["POST"]),
        Route(prefix + "/files", endpoint(files_api.list_files), methods=["GET"]),
        Route(prefix + "/files/{file_id:path}", endpoint(file_get), methods=["GET"]),
        Route(prefix + "/files/{file_id:path}", endpoint(file_delete), methods=["DELETE"]),
        Route(prefix + "/batches", endpoint(batches_api.create), methods=["POST"]),
        Route(prefix + "/batches", endpoint(batches_api.list_batches), methods=["GET"]),
        Route(prefix + "/batches/{batch_id}", endpoint(batches_api.retrieve), methods=["GET"]),
        Route(prefix + "/batches/{batch_id}/cancel", endpoint(batches_api.cancel), methods=["POST"]),
    ]
