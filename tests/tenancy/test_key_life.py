"""Key life over HTTP: revocation honoured by every replica within VBP_KEY_CACHE_SECONDS, the rotation grace
period, expiry to the instant, and the admin HTTP API (admin keys only) with its audit trail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from proxy.cli import cli
from proxy.clock import utcnow
from proxy.ledger.models import ApiKey, KeyEvent, RequestLog
from proxy.tenancy.key_admin import issue_key, revoke, rotate
from proxy.tenancy.keys import hash_secret
from tests.support.proxy_server import ProxyServer
from tests.tenancy.conftest import COLLECTION, Tenancy, envelope

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TTL = 0.5


@pytest.fixture(scope="module")
def replicas(tenancy: Tenancy) -> Iterator[list[ProxyServer]]:
    """Two more proxies on the same ledger, each trusting a key lookup for TTL seconds."""
    servers = [tenancy.replica(key_cache_seconds=TTL) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def status_of(tenancy: Tenancy, secret: str, proxy: ProxyServer | None = None) -> int:
    return tenancy.client_for(secret, proxy=proxy).get(COLLECTION, params={"pageSize": 1}).status_code


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_revocation_is_honoured_by_every_replica_within_the_cache_ttl(tenancy: Tenancy,
                                                                      replicas: list[ProxyServer]) -> None:
    _, secret = tenancy.new_key("lifecycle")
    warmed = time.monotonic()
    assert [status_of(tenancy, secret, r) for r in replicas] == [200, 200]  # each replica caches the key
    key_id = tenancy.sessions().scalars(select(ApiKey.id).where(ApiKey.secret_hash == hash_secret(secret))).one()
    with tenancy.sessions.begin() as session:  # "another replica": the CLI or the admin API on another host
        revoke(session, actor="cli:test", key_id=key_id)
    revoked = time.monotonic()
    still = [status_of(tenancy, secret, r) for r in replicas]
    if time.monotonic() < warmed + TTL:  # provably inside every replica's cache window
        assert still == [200, 200]
    sleep_until(revoked + TTL + 0.05)
    assert [status_of(tenancy, secret, r) for r in replicas] == [401, 401]


def test_rotation_keeps_the_old_secret_for_the_grace_period_and_not_a_moment_longer(tenancy: Tenancy,
                                                                                   replicas: list[ProxyServer]) -> None:
    grace = 1.5
    key_id, old = tenancy.new_key("lifecycle")
    assert status_of(tenancy, old, replicas[0]) == 200
    with tenancy.sessions.begin() as session:
        rotated = rotate(session, actor="cli:test", key_id=key_id, grace_seconds=grace)
        assert rotated is not None
        new = rotated[1]
    rotated_at = time.monotonic()
    assert new != old and new.startswith("vbp_")
    assert status_of(tenancy, new) == 200 and status_of(tenancy, new, replicas[0]) == 200
    # Inside the grace; the main proxy (5 s cache) now trusts the old secret, knowing when its grace ends.
    assert status_of(tenancy, old) == 200
    sleep_until(rotated_at + TTL + 0.05)
    assert status_of(tenancy, old, replicas[0]) == 200  # a fresh lookup after the rotation
    sleep_until(rotated_at + grace - 0.5)
    assert status_of(tenancy, old) == 200 and status_of(tenancy, old, replicas[1]) == 200
    sleep_until(rotated_at + grace + 0.05)
    # Refused at the end of the grace, even by a process whose cache entry is younger than its 5 s TTL.
    assert status_of(tenancy, old) == 401 and status_of(tenancy, old, replicas[1]) == 401
    assert status_of(tenancy, new) == 200


def test_an_expired_key_is_refused_at_its_expiry_even_from_the_cache(tenancy: Tenancy) -> None:
    lifetime = 1.0
    with tenancy.sessions.begin() as session:
        _, secret = issue_key(session, actor="cli:test", team="lifecycle",
                              expires_at=utcnow() + timedelta(seconds=lifetime))
    made = time.monotonic()
    assert status_of(tenancy, secret) == 200  # cached for 5 s by the main proxy
    sleep_until(made + lifetime + 0.05)
    reply = tenancy.client_for(secret).get(COLLECTION)
    assert reply.status_code == 401 and envelope(reply)["status"] == "UNAUTHENTICATED"


# --- the admin HTTP API ----------------------------------------------------------------------------------------

def test_the_keys_api_needs_an_admin_key(tenancy: Tenancy) -> None:
    before = len(tenancy.emulator_calls())
    for method, path in (("GET", "/v1/keys"), ("POST", "/v1/keys"), ("POST", "/v1/keys/key_x:revoke"),
                         ("POST", "/v1/keys/key_x:rotate"), ("GET", "/v1/keys/key_x/events")):
        anonymous = httpx.request(method, tenancy.proxy.url + path, json={"team": "x"}, timeout=10)
        assert anonymous.status_code == 401 and envelope(anonymous)["status"] == "UNAUTHENTICATED"
        team = tenancy.client("team-a").request(method, path, json={"team": "x"})
        assert team.status_code == 403 and envelope(team)["status"] == "PERMISSION_DENIED"
    assert len(tenancy.emulator_calls()) == before


def test_the_keys_api_creates_lists_rotates_and_revokes_with_an_audit_trail(tenancy: Tenancy,
                                                                           replicas: list[ProxyServer]) -> None:
    admin = tenancy.client("admin")
    made = admin.post("/v1/keys", json={"team": "api-team", "name": "from the api", "projects": ["your-project"],
                                        "operations": ["read"], "expires_in": "1d"})
    assert made.status_code == 200, made.text
    created = made.json()
    key_id, first = created["id"], created["key"]
    assert created["team"] == "api-team" and created["operations"] == ["read"] and created["state"] == "active"
    assert created["projects"] == ["your-project"] and created["expires_at"] is not None
    assert status_of(tenancy, first) == 200
    assert tenancy.client_for(first).post(COLLECTION, json={}).status_code == 403  # its scopes hold

    listed = admin.get("/v1/keys").json()["keys"]
    mine = [k for k in listed if k["id"] == key_id]
    assert len(mine) == 1 and mine[0]["prefix"] == first[:10]
    assert first not in json.dumps(listed) and hash_secret(first) not in json.dumps(listed)

    rotated = admin.post(f"/v1/keys/{key_id}:rotate", json={"grace_seconds": 60})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["key"]
    assert rotated.json()["id"] == key_id and rotated.json()["previous_secret_valid_until"] is not None
    assert status_of(tenancy, second) == 200 and status_of(tenancy, first) == 200  # inside the grace

    revoked = admin.post(f"/v1/keys/{key_id}:revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert admin.post(f"/v1/keys/{key_id}:rotate").status_code == 404  # a revoked key cannot be rotated
    assert status_of(tenancy, second, replicas[1]) == 401  # a process that had not cached it refuses it at once

    events = admin.get(f"/v1/keys/{key_id}/events").json()["events"]
    assert [(e["action"], e["actor"], e["team"]) for e in events] == [
        ("create", tenancy.key_ids["admin"], "api-team"), ("rotate", tenancy.key_ids["admin"], "api-team"),
        ("revoke", tenancy.key_ids["admin"], "api-team")]
    assert events[0]["detail"]["operations"] == ["read"] and events[1]["detail"]["grace_seconds"] == 60

    # Every call is in the request log (written in the background), and nothing secret is there or in the trail.
    deadline = time.monotonic() + 5
    routes: set[str] = set()
    while not {"keys.create", "keys.list", "keys.action", "keys.events"} <= routes and time.monotonic() < deadline:
        time.sleep(0.05)
        with tenancy.sessions() as session:
            routes = set(session.scalars(select(RequestLog.route).where(RequestLog.route.like("keys.%"))))
    def dump(*tables: str) -> str:
        with tenancy.sessions() as session:
            return json.dumps([list(map(str, row)) for table in tables
                               for row in session.execute(text(f"SELECT * FROM {table}"))])

    assert hash_secret(second) in dump("api_keys")  # the dump shows a hash where there is one...
    trail = dump("key_events", "request_log")
    for secret in (first, second):  # ...and there is none in the audit trail or the request log
        assert secret not in trail and hash_secret(secret) not in trail and secret[4:20] not in trail
    assert {"keys.create", "keys.list", "keys.action", "keys.events"} <= routes


@pytest.mark.parametrize(("body", "words"), [
    ({"name": "no team"}, "team"),
    ({"team": "Not A Label"}, "team 'Not A Label'"),
    ({"team": "t", "operations": ["create", "write"]}, "unknown operations: write"),
    ({"team": "t", "projects": "your-project"}, "projects must be a list"),
    ({"team": "t", "locations": ["us-central1.evil.com"]}, "invalid location"),
    ({"team": "t", "expires_in": "tomorrow"}, "expires_in"),
    ({"team": "t", "expires_in": -5}, "expires_in"),
    ({"team": "t", "secret": "mine"}, "Unknown field(s): secret"),
    ({"team": "t", "admin": "yes"}, "admin a boolean"),
])
def test_the_keys_api_refuses_bad_bodies(tenancy: Tenancy, body: dict[str, object], words: str) -> None:
    with tenancy.sessions() as session:
        before = session.scalars(select(ApiKey.id)).all()
    reply = tenancy.client("admin").post("/v1/keys", json=body)
    assert reply.status_code == 400 and words in envelope(reply)["message"], reply.text
    with tenancy.sessions() as session:
        assert session.scalars(select(ApiKey.id)).all() == before


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/v1/keys/key_doesnotexist:revoke", 404),
    ("POST", "/v1/keys/key_doesnotexist:rotate", 404),
    ("GET", "/v1/keys/key_doesnotexist/events", 404),
    ("POST", "/v1/keys/key_x:pause", 404),
    ("GET", "/v1/nothing-here", 404),
    ("GET", "/v1/projects/your-project/locations/us-central1/endpoints", 404),
])
def test_unknown_keys_and_paths_are_404_in_the_envelope(tenancy: Tenancy, method: str, path: str,
                                                        status: int) -> None:
    reply = tenancy.client("admin").request(method, path)
    assert reply.status_code == status and envelope(reply)["status"] == "NOT_FOUND"


def test_rotating_with_a_negative_grace_is_refused(tenancy: Tenancy) -> None:
    key_id, _ = tenancy.new_key("lifecycle")
    reply = tenancy.client("admin").post(f"/v1/keys/{key_id}:rotate", json={"grace_seconds": -1})
    assert reply.status_code == 400 and envelope(reply)["status"] == "INVALID_ARGUMENT"


def test_cli_key_commands_are_audited_as_the_cli(tenancy: Tenancy) -> None:
    runner = CliRunner()
    env = {"VBP_DATABASE_URL": tenancy.database_url}
    made = json.loads(runner.invoke(cli, ["keys", "create", "--team", "cli-audit", "--json"], env=env).stdout)
    rotated = runner.invoke(cli, ["keys", "rotate", made["id"], "--grace", "10m"], env=env)
    assert rotated.exit_code == 0 and "key: vbp_" in rotated.output
    assert runner.invoke(cli, ["keys", "revoke", made["id"]], env=env).exit_code == 0
    assert runner.invoke(cli, ["keys", "revoke", made["id"]], env=env).exit_code == 0  # no second event
    result = runner.invoke(cli, ["keys", "events", "--key", made["id"], "--json"], env=env)
    events = json.loads(result.stdout)
    assert [e["action"] for e in events] == ["create", "rotate", "revoke"]
    assert all(e["actor"].startswith("cli:") and e["key_id"] == made["id"] for e in events)
    assert events[1]["detail"]["grace_seconds"] == 600
    listed = json.loads(runner.invoke(cli, ["keys", "list", "--json"], env=env).stdout)
    assert [k["state"] for k in listed if k["id"] == made["id"]] == ["revoked"]
    assert made["key"] not in result.output + json.dumps(listed)
    with tenancy.sessions() as session:
        rows = session.scalars(select(KeyEvent).where(KeyEvent.key_id == made["id"])).all()
        assert len(rows) == 3 and all(r.team == "cli-audit" for r in rows)

