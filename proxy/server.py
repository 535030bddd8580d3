"""Running the proxy under uvicorn, with an HTTP protocol that tells the app what the request target really was."""

from __future__ import annotations

import logging

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.settings import Settings


class StrictHttpToolsProtocol(HttpToolsProtocol):
    """httptools drops the scheme, host and fragment of a request target before the app sees it.

    The proxy refuses absolute-form targets (`GET http://host/path`) and raw `#`, so it marks them in the
    scope here, where the original target is still known.
    """

    def on_headers_complete(self) -> None:
        target = bytes(self.url)
        if not target.startswith(b"/") or b"#" in target:
            self.scope["vbp.absolute_form"] = True  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()


def run(settings: Settings, *, host: str, port: int) -> None:
    """Serve the proxy until stopped."""
    from proxy.app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, http=StrictHttpToolsProtocol, loop="auto",
                access_log=False, log_level=settings.log_level, proxy_headers=False, server_header=False)
