"""The database down is a 503 UNAVAILABLE in Google's envelope on every route that needs it (never a 500, never a
401 for a key that cannot be looked up), `/readyz` says 503, and once the database is back the same proxy process
serves again. The test stops and restarts a PostgreSQL server of its own under a running proxy."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.reports.session_cookie import COOKIE_NAME
from proxy.tenancy.keys import create_key
from tests.gateway.conftest import COLLECTION
from tests.providers.vertex.conftest import start_proxied
from tests.providers.vertex.test_bad_input import GOOD_BODY
from tests.support.postgres import LocalPostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

UNAVAILABLE = {"error": {"code": 503, "status": "UNAVAILABLE",
                         "message": "The proxy's database is unavailable; try again shortly."}}


@dataclass
class Outage:
    database: LocalPostgres
    url: str
    keys: dict[str, str]
    jobs: list[str]
    cookie: str

    def client(self, who: str = "team-a") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.keys[who]}"})


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    database = LocalPostgres()  # its own server: the suite's shared one stays up for the other tests
    database.start()
    saved = dict(os.environ)
    try:
        url = database.create_database("outage")
        upgrade(url)
        engine = make_engine(url)
        keys: dict[str, str] = {}
        with make_sessionmaker(engine).begin() as session:
            keys["team-a"] = create_key(session, team="team-a", name="a")[1]
            keys["admin"] = create_key(session, team="platform", name="admin", admin=True)[1]
        engine.dispose()
        # No key cache: every request looks its key up, so every route meets the outage.
        stack, proxy, sqlite_sessions = start_proxied(Path(tmp_path_factory.mktemp("outage")), database_url=url,
                                                      key_cache_seconds=0.0, auto_migrate=False,
                                                      job_seconds=600)  # jobs still running: cancel works
        sqlite_sessions.kw["bind"].dispose()
        try:
            env = Outage(database, proxy.url, keys, [], "")
            with env.client() as client:
                for _ in range(2):
                    reply = client.post(COLLECTION, content=GOOD_BODY, headers={"content-type": "application/json"})
                    assert reply.status_code == 200, reply.text
                    env.jobs.append(reply.json()["name"].rsplit("/", 1)[-1])
                # The second job is cancelled now, for its delete to be allowed later (a running job's is not).
                second = f"{COLLECTION}/{env.jobs[1]}"
                assert client.post(f"{second}:cancel").status_code == 200
                deadline = time.monotonic() + 30
                while client.get(second).json()["state"] != "JOB_STATE_CANCELLED":
                    assert time.monotonic() < deadline, "the cancel never ended"
                    time.sleep(0.1)
                login = client.post("/dashboard/login", data={"key": keys["team-a"]}, follow_redirects=False)
                assert login.status_code == 303
                env.cookie = login.cookies[COOKIE_NAME]
            yield env
        finally:
            proxy.stop()
            stack.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        database.stop()


def _calls(env: Outage) -> list[tuple[str, str, str, dict[str, str], bytes]]:
    """(who, method, target, headers, body) for every route that needs the database."""
    json_type = {"content-type": "application/json"}
    first, second = env.jobs
    return [
        ("team-a", "POST", COLLECTION, json_type, GOOD_BODY),
        ("team-a", "GET", COLLECTION, {}, b""),
        ("team-a", "GET", f"{COLLECTION}/{first}", {}, b""),
        ("team-a", "POST", f"{COLLECTION}/{first}:cancel", {}, b""),
        ("team-a", "DELETE", f"{COLLECTION}/{second}", {}, b""),
        ("admin", "GET", "/v1/keys", {}, b""),
        ("admin", "GET", "/v1/teams", {}, b""),
        ("team-a", "GET", "/v1/costs", {}, b""),
        ("team-a", "GET", "/dashboard", {"cookie": f"{COOKIE_NAME}={env.cookie}"}, b""),
    ]


def test_every_route_says_503_while_the_database_is_down_and_serves_again_after(outage: Outage) -> None:
    outage.database.pause()
    try:
        for who, method, target, headers, body in _calls(outage):
            with outage.client(who) as client:
                reply = client.request(method, target, headers=headers, content=body)
            assert (target, reply.status_code, reply.json()) == (target, 503, UNAVAILABLE)
            assert reply.headers["content-type"] == "application/json; charset=UTF-8"
        with outage.client() as client:
            ready = client.get("/readyz")
            assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
            assert client.get("/healthz").status_code == 200  # alive: a restart would not bring the database back
            metrics = client.get("/metrics")
            assert metrics.status_code == 200 and "\nvbp_ledger_up 0.0\n" in metrics.text
    finally:
        outage.database.resume()

    statuses = []
    for who, method, target, headers, body in _calls(outage):
        with outage.client(who) as client:
            statuses.append((method, target, client.request(method, target, headers=headers, content=body)
                             .status_code))
    assert statuses == [(method, target, 200) for _, method, target, _, _ in _calls(outage)]
    with outage.client() as client:
        assert client.get("/readyz").status_code == 200
