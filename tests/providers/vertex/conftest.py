"""The proxy under test: `vbp serve`'s app on loopback, in front of the project's emulator, on a SQLite ledger."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import storage
from sqlalchemy.orm import Session, sessionmaker

from proxy.emulator.stack import EmulatorStack
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.settings import Settings
from proxy.tenancy.keys import create_key
from tests.support.proxy_server import ProxyServer
from tests.support.samples import SAMPLES as SAMPLES  # re-exported: the tests of this package read it here

ALIAS, REAL_PROJECT = "your-project", "my-real-project"
LOCATION = "us-central1"
# The buckets these tests use, open to every team: data boundaries have tests of their own (tests/tenancy).
TEST_PREFIXES = ("gs://my-bucket/", "gs://sdk-bucket/", "gs://metering/", "gs://faults/", "gs://bad-input/",
                 "gs://no-such-bucket/", "gs://doomed-bucket/")


@dataclass
class Proxied:
    """A running emulator + proxy pair, the ledger behind it, and keys for two teams and an admin."""

    stack: EmulatorStack
    proxy: ProxyServer
    sessions: sessionmaker[Session]
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def client(self, who: str = "team-a") -> httpx.Client:
        return httpx.Client(base_url=self.proxy.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[who]}"})

    def emulator_calls(self) -> list[dict[str, object]]:
        return [e for e in self.stack.request_log if e.get("api") == "vertex"]

    def bucket(self, name: str) -> storage.Bucket:
        client = self.stack.storage_client()
        bucket = client.bucket(name)
        return bucket if bucket.exists() else client.create_bucket(name)


def start_proxied(tmp: Path, *, job_seconds: float = 0.6, extra_models: tuple[str, ...] = ("gemini-1.5-flash",),
                  token_lifetime: int = 3600, echo_keys: bool = True, azure_token_quota: int | None = None,
                  **overrides: object) -> tuple[EmulatorStack, ProxyServer, sessionmaker[Session]]:
    """Start an emulator and a proxy pointed at it; GOOGLE_APPLICATION_CREDENTIALS etc. are set in os.environ."""
    quota = {} if azure_token_quota is None else {"azure_token_quota": azure_token_quota}
    stack = EmulatorStack(job_seconds=job_seconds, extra_models=extra_models, token_lifetime=token_lifetime,
                          echo_keys=echo_keys, **quota).start()
    os.environ.update(stack.env)
    if callable(overrides.get("models_file")):  # a catalog made from the running stack's (its URLs name its port)
        overrides["models_file"] = str(overrides["models_file"](stack))  # type: ignore[operator]
    url = f"sqlite:///{tmp / 'ledger.db'}"
    upgrade(url)
    options: dict[str, object] = {"database_url": url, "vertex_base_url": stack.base_url,
                                  "project_aliases": {ALIAS: REAL_PROJECT}, "poller_enabled": False,
                                  "retry_max_seconds": 3, "team_gcs_prefixes": TEST_PREFIXES, **overrides}
    try:
        proxy = ProxyServer(Settings(**options)).start()  # type: ignore[arg-type]
    except BaseException:
        stack.stop()
        raise
    return stack, proxy, make_sessionmaker(make_engine(url))


@contextmanager
def running(tmp: Path, *, teams: tuple[str, ...] = ("team-a",), **options: Any) -> Iterator[Proxied]:
    """An emulator and a proxy with a key per team; everything stopped and the environment restored after."""
    saved = dict(os.environ)
    stack, proxy, sessions = start_proxied(tmp, **options)
    env = Proxied(stack, proxy, sessions)
    try:
        with sessions.begin() as session:
            for team in teams:
                key, secret = create_key(session, team=team, name=team)
                env.keys[team], env.key_ids[team] = secret, key.id
        yield env
    finally:
        proxy.stop()
        stack.stop()
        sessions.kw["bind"].dispose()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("proxied"), teams=("team-a", "team-b")) as env:
        with env.sessions.begin() as session:
            key, secret = create_key(session, team="platform", name="admin", admin=True)
            env.keys["admin"], env.key_ids["admin"] = secret, key.id
        yield env
