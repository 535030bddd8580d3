"""The upstream's connection pool: bounded, and handing out the connection released last, so that the connections
a burst opened go idle and are closed after the keep-alive time instead of staying for the life of the process."""

from __future__ import annotations

from collections import deque

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey


class NewestFirstConnector(aiohttp.TCPConnector):
    """A TCPConnector whose idle connections are reused newest first.

    aiohttp (since 3.11) reuses the oldest idle connection first. Under a steady load every pooled connection is
    then used in turn, none is ever idle for `keepalive_timeout`, and the pool keeps the largest size any burst
    gave it: the soak's open fds grew in steps that never came back down. Reusing the connection released last
    leaves the surplus idle, and aiohttp's own cleanup closes it after `keepalive_timeout`.
    """

    def _release(self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        # aiohttp appends a released connection on the right and takes from the left (a deque); older versions
        # kept a list and took from the right, newest first already.
        if isinstance(idle, deque) and idle and idle[-1][0] is protocol:
            idle.rotate(1)
