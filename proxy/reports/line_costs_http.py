"""`GET /v1/costs/lines?job=<job name or batch id>&format=jsonl|csv`: a metered job's per-line costs, streamed.

Any key may ask for its own team's jobs (an admin key: any team's); another team's job answers 404, as a missing one.
Errors found before the first byte (unknown job, not metered yet, bad format) are in Google's envelope; the body
is then streamed from the output files as they are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.errors import InvalidArgument
from proxy.gateway.accounting import accounted_as
from proxy.ledger.request_log import record_of
from proxy.metering.job_meter import storage_client
from proxy.metering.pricing import PricingTable
from proxy.reports.line_costs import FORMATS, LineSource, export, find_job, line_source
from proxy.reports.line_keys import job_key_reader
from proxy.services import Services
from proxy.tenancy.auth import authenticate

MEDIA_TYPES = {"jsonl": "application/jsonl", "csv": "text/csv; charset=utf-8"}


def line_cost_routes(services: Callable[[], Services | None]) -> list[Route]:
    """The route, for `create_app` to list."""
    async def endpoint(request: Request) -> Response:
        running = services()
        assert running is not None, "the lifespan has not run"
        return await lines(request, running)
    return [Route("/v1/costs/lines", accounted_as("cost_lines", endpoint), methods=["GET"])]


async def lines(request: Request, services: Services) -> Response:
    principal = await authenticate(services, request.headers.items())
    record = record_of(request.scope)
    record.key_id, record.team = principal.key_id, principal.team
    ref, fmt = request.query_params.get("job"), request.query_params.get("format", "jsonl")
    if not ref:
        raise InvalidArgument("job is required: a job's name (or an OpenAI-door batch id).")
    if fmt not in FORMATS:
        raise InvalidArgument(f"format {fmt!r} is not jsonl or csv")

    def prepare() -> LineSource:
        pricing = PricingTable.load(services.settings.pricing_path)
        with services.sessions() as session:
            job = find_job(session, ref=ref, principal=principal)
            record.job_name = job.name
            return line_source(session, job=job, pricing=pricing)

    source = await to_thread.run_sync(prepare)
    client = await to_thread.run_sync(storage_client)
    try:
        keys = await to_thread.run_sync(lambda: job_key_reader(source.job, client=client,
                                                               files_bucket=services.settings.files_bucket))
    except BaseException:
        client.close()
        raise

    def body() -> Iterator[bytes]:
        # The client is closed with the stream (also when the caller leaves early and the generator is closed):
        # a client left to the garbage collector keeps its socket open until a full collection.
        try:
            yield from export(client, source, fmt, keys=keys)
        finally:
            client.close()

    filename = f"lines-{source.job.job_id}.{fmt}"
    return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt],
                             headers={"content-disposition": f'attachment; filename="{filename}"',
                                      "cache-control": "no-store"})
