"""SQLAlchemy's exceptions, translated where they enter the gateway: the database out of reach is a 503.

A lost or refused connection, a server shutting down, a pool with no connection to give: `Unavailable`, which
the client may retry. (The engine pings connections before use and drops the pool on a disconnect, so the proxy
serves again as soon as the database is back.) Anything else (a missing table, a bad statement) is a bug, and
stays an unexpected error: a logged 500.
"""

from __future__ import annotations

from sqlalchemy import exc as sa

from proxy.errors import ApiError, Unavailable

# SQLite's own ways of being out of reach; its OperationalError also covers bugs such as "no such table".
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")
_MESSAGE = "The proxy's database is unavailable; try again shortly."


def translate(exc: BaseException) -> ApiError | None:
    """`Unavailable` for an exception that says the database cannot be reached; None for any other."""
    if isinstance(exc, sa.TimeoutError):  # the pool had no connection to give in time
        return Unavailable(_MESSAGE)
    if not isinstance(exc, sa.DBAPIError):
        return None
    if exc.connection_invalidated or isinstance(exc, sa.InterfaceError):
        return Unavailable(_MESSAGE)
    if isinstance(exc, sa.OperationalError):
        module = type(exc.orig).__module__ if exc.orig is not None else ""
        if not module.startswith("sqlite3") or any(text in str(exc.orig).lower() for text in _SQLITE_UNAVAILABLE):
            return Unavailable(_MESSAGE)
    return None
