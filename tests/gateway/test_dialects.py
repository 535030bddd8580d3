"""One ApiError handler: an error is answered in the route's dialect (Google's envelope on every route today),
and foreign exceptions are translated by their library's table (SQLAlchemy's: the database out of reach)."""

from __future__ import annotations

import json
import sqlite3

import psycopg
import pytest
from sqlalchemy import exc as sa

from proxy.errors import ApiError, NotFound, Unauthenticated, Unavailable
from proxy.gateway.dialects import dialect_for, error_reply, google
from proxy.gateway.error_replies import translated
from tests.gateway.conftest import COLLECTION
from tests.providers.vertex.conftest import Proxied


@pytest.mark.parametrize("path", [COLLECTION, "/v1beta1/projects/p/locations/l/batchPredictionJobs/1", "/v1/keys",
                                  "/v1/teams/x", "/v1/costs", "/dashboard", "/metrics", "/healthz", "/readyz", "/"])
def test_every_route_of_today_speaks_googles_dialect(path: str) -> None:
    assert dialect_for({"path": path, "raw_path": path.encode()}) is google


def test_the_google_reply_carries_the_envelope_and_the_errors_headers() -> None:
    error = Unauthenticated("No key.", headers={"WWW-Authenticate": 'Bearer realm="x"'})
    start, body = error_reply({"path": "/metrics"}, error)
    assert start == {"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json; charset=UTF-8"), (b"content-length", str(len(body["body"])).encode()),
        (b"www-authenticate", b'Bearer realm="x"')]}
    assert json.loads(body["body"]) == {"error": {"code": 401, "message": "No key.", "status": "UNAUTHENTICATED"}}


def _wrapped(orig: BaseException, *, invalidated: bool = False,
             kind: type[sa.DBAPIError] = sa.OperationalError) -> sa.DBAPIError:
    return kind("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(("exc", "expected"), [
    (_wrapped(psycopg.OperationalError("connection refused")), Unavailable),
    (_wrapped(psycopg.OperationalError("terminating connection due to administrator command")), Unavailable),
    (_wrapped(psycopg.errors.UndefinedTable("relation does not exist"), kind=sa.ProgrammingError), None),
    (_wrapped(psycopg.errors.UndefinedTable("x"), kind=sa.ProgrammingError, invalidated=True), Unavailable),
    (_wrapped(psycopg.InterfaceError("the connection is closed"), kind=sa.InterfaceError), Unavailable),
    (_wrapped(sqlite3.OperationalError("database is locked")), Unavailable),
    (_wrapped(sqlite3.OperationalError("unable to open database file")), Unavailable),
    (_wrapped(sqlite3.OperationalError("no such table: key_events")), None),
    (sa.TimeoutError("QueuePool limit of size 10 overflow 20 reached"), Unavailable),
    (ValueError("a bug"), None),
    (KeyError("a bug"), None),
])
def test_sqlalchemys_table(exc: BaseException, expected: type[ApiError] | None) -> None:
    error = translated(exc)
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected and error is not None
        assert error.envelope() == {"error": {"code": 503, "status": "UNAVAILABLE",
                                              "message": "The proxy's database is unavailable; try again shortly."}}


@pytest.mark.parametrize("target", ["/no/such/route", "/v1/keys/", "/v1/projects/p/locations/l/models"])
def test_a_missing_route_is_a_404_in_the_envelope(gateway: Proxied, target: str) -> None:
    with gateway.client() as client:
        reply = client.get(target)
    assert reply.status_code == 404
    assert reply.json()["error"]["status"] == "NOT_FOUND" and reply.json()["error"]["code"] == 404
    assert reply.headers["content-type"] == "application/json; charset=UTF-8"
    assert NotFound.http_status == 404
