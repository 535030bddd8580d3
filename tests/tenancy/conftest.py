"""One emulator and one proxy (SQLite ledger) for every tenancy test; replicas on the same ledger on demand.

Teams: `team-a`, `team-b`, and an admin key of team `platform`. Tests that count jobs make their own teams, so the
order the tests run in does not matter.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from proxy.cli import cli
from proxy.emulator.jobs import Job as EmulatorJob
from proxy.emulator.stack import EmulatorStack
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.providers.vertex.resources import JobName
from proxy.settings import Settings
from proxy.tenancy.keys import create_key
from tests.support.proxy_server import ProxyServer
from tests.support.samples import SAMPLES

ALIAS, REAL_PROJECT, LOCATION = "your-project", "my-real-project", "us-central1"
COLLECTION = f"/v1/projects/{ALIAS}/locations/{LOCATION}/batchPredictionJobs"
BUCKET = "tenancy-bucket"
MISSING_ID = "1234567890123456789"


def job_body(display_name: str, **extra: Any) -> dict[str, Any]:
    """A create body the emulator runs (reading the uploaded sample input)."""
    return {"displayName": display_name, "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{BUCKET}/input.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/out/"}}, **extra}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Tenancy:
    stack: EmulatorStack
    proxy: ProxyServer
    database_url: str
    sessions: sessionmaker[Session]
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    _clients: dict[tuple[str, str], httpx.Client] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        options: dict[str, Any] = {"database_url": self.database_url, "vertex_base_url": self.stack.base_url,
                                   "project_aliases": {ALIAS: REAL_PROJECT}, "poller_enabled": False,
                                   "retry_max_seconds": 3, "reconcile_interval": 0.0,
                                   "team_gcs_prefixes": (f"gs://{BUCKET}/",), **overrides}
        return Settings(**options)

    def replica(self, **overrides: Any) -> ProxyServer:
        """Another proxy process's worth of state (its own caches) on the same ledger and emulator."""
        return ProxyServer(self.settings(**overrides)).start()

    def client(self, who: str) -> httpx.Client:
        """The main proxy's client for one of the fixture's keys."""
        return self.client_for(self.keys[who])

    def client_for(self, secret: str, *, proxy: ProxyServer | None = None) -> httpx.Client:
        """A client sending `secret`, kept open for the whole run (making one costs ~50 ms)."""
        url = (proxy or self.proxy).url
        if (secret, url) not in self._clients:
            self._clients[(secret, url)] = httpx.Client(base_url=url, timeout=30,
                                                        headers={"Authorization": f"Bearer {secret}"})
        return self._clients[(secret, url)]

    def close_clients(self) -> None:
        for client in self._clients.values():
            client.close()

    def new_key(self, team: str, **scopes: Any) -> tuple[str, str]:
        """(key id, secret) of a fresh key."""
        with self.sessions.begin() as session:
            key, secret = create_key(session, team=team, name=unique("test"), **scopes)
            return key.id, secret

    def emulator_calls(self) -> list[dict[str, Any]]:
        return [e for e in self.stack.request_log if e.get("api") == "vertex"]

    def create(self, who: str, display_name: str | None = None, **extra: Any) -> dict[str, Any]:
        """Create a job through the proxy with `who`'s key; the job as Vertex answered."""
        reply = self.client(who).post(COLLECTION, json=job_body(display_name or unique(who), **extra))
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def create_counted(self, secret: str, payload: object, *, proxy: ProxyServer | None = None,
                       version: str = "v1") -> tuple[httpx.Response, int]:
        """The reply to a create sent as raw JSON, and how many calls reached the emulator because of it."""
        before = len(self.emulator_calls())
        reply = self.client_for(secret, proxy=proxy).post(
            f"/{version}/projects/{ALIAS}/locations/{LOCATION}/batchPredictionJobs", content=json.dumps(payload),
            headers={"Content-Type": "application/json"})
        return reply, len(self.emulator_calls()) - before

    def emulator_job(self, name: str) -> EmulatorJob:
        parsed = JobName.parse(name)
        assert parsed is not None
        return self.stack.state.jobs.get(parsed.project, parsed.location, parsed.job_id)

    def end(self, name: str, timeout: float = 10.0) -> None:
        """Cancel a job at the emulator itself and wait until it has ended."""
        job = self.emulator_job(name)
        parsed = JobName.parse(name)
        assert parsed is not None
        self.stack.state.jobs.cancel(parsed.project, parsed.location, parsed.job_id)
        deadline = time.monotonic() + timeout
        while not job.state.terminal:
            assert time.monotonic() < deadline, f"{name} did not end"
            time.sleep(0.02)

    def create_outside(self, display_name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A job made straight at Vertex (the emulator) with Google credentials, not through the proxy."""
        body = job_body(display_name, **({"labels": labels} if labels else {}))
        reply = httpx.post(f"{self.stack.base_url}/v1/projects/{REAL_PROJECT}/locations/{LOCATION}"
                           "/batchPredictionJobs", json=body,
                           headers={"Authorization": f"Bearer {self.stack.issue_token()}"}, timeout=30)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


@pytest.fixture(scope="package")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    saved = dict(os.environ)
    # Jobs stay PENDING then RUNNING for a minute unless ended on purpose.
    stack = EmulatorStack(job_seconds=60).start()
    os.environ.update(stack.env)
    url = f"sqlite:///{tmp_path_factory.mktemp('tenancy') / 'ledger.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    env = Tenancy(stack, None, url, sessions)  # type: ignore[arg-type]
    try:
        env.proxy = env.replica()
        client = stack.storage_client()
        client.create_bucket(BUCKET).blob("input.jsonl").upload_from_filename(
            str(SAMPLES / "vertex-batch-input.jsonl"))
        with sessions.begin() as session:
            for who, team, admin in (("team-a", "team-a", False), ("team-b", "team-b", False),
                                     ("admin", "platform", True)):
                key, secret = create_key(session, team=team, name=who, admin=admin)
                env.keys[who], env.key_ids[who] = secret, key.id
        yield env
    finally:
        env.close_clients()
        if env.proxy is not None:
            env.proxy.stop()
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


def envelope(reply: httpx.Response) -> dict[str, Any]:
    """The Google error envelope of a reply, checked for shape."""
    body = reply.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == reply.status_code and isinstance(error["message"], str) and error["message"]
    return dict(error)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def reconcile(tenancy: Tenancy, *args: str, **env: str) -> list[dict[str, str]]:
    """`vbp reconcile --json ARGS` on the tenancy ledger (`env`: more settings); its outcomes."""
    env = {"VBP_DATABASE_URL": tenancy.database_url, "VBP_PROJECT_ALIASES": f"{ALIAS}={REAL_PROJECT}", **env}
    result = CliRunner().invoke(cli, ["reconcile", "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))
