"""Playing an injected fault on one call: served first or not at all, then held, cut or replaced by an error
rendered in the caller's API dialect (Google's envelope, OpenAI's or Azure's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.responses import Response

from proxy.emulator.connection_faults import ConnectionReset
from proxy.emulator.faults import Injection
from proxy.errors import ApiError


async def play(injected: Injection, serve: Callable[[], Awaitable[Response]],
               render: Callable[[ApiError], Response]) -> Response:
    """Answer a call as its injected fault says; `serve` must answer errors itself, as a Response."""
    reply: Response | None = None
    if injected.after_serving:
        reply = await serve()
    if injected.hold_seconds:
        await asyncio.sleep(injected.hold_seconds)
    if injected.reset:
        return ConnectionReset()
    if injected.error is not None:
        return render(injected.error)
    assert reply is not None
    return reply
