"""An upstream reply whose body has not been read yet, the same whichever HTTP library fetched it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType


class UpstreamResponse:
    """Status, headers and a body to stream once; the connection goes back to the pool when it ends or on aclose()."""

    def __init__(self, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes],
                 release: Callable[[bool], Awaitable[None]], *, request_id: str = "") -> None:
        self.status = status
        self.headers = headers
        self.request_id = request_id
        self.attempts = 1
        self._chunks = chunks
        # release(True) after a complete read keeps the connection; release(False) drops a half-read one.
        self._release = release
        self._streamed = False
        self._closed = False
        self._content: bytes | None = None

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} request_id={self.request_id!r} attempts={self.attempts}>"

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        """The body exactly as the upstream sent it, chunk by chunk; releases the connection at the end."""
        if self._content is not None:
            yield self._content
            return
        if self._streamed:
            raise RuntimeError("the upstream body was already streamed")
        self._streamed = True
        complete = False
        try:
            async for chunk in self._chunks:
                if chunk:
                    yield chunk
            complete = True
        finally:
            await self._close(complete)

    async def read(self) -> bytes:
        """The whole body (for replies the proxy inspects: creates, gets, lists)."""
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    async def aclose(self) -> None:
        """Release the connection; safe to call more than once, and after the body was read."""
        await self._close(False)

    async def _close(self, complete: bool) -> None:
        if not self._closed:
            self._closed = True
            await self._release(complete)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
