"""API keys on both databases: shown once, stored hashed, refused once revoked, expired or rotated out."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger.models import ApiKey
from proxy.tenancy.keys import KeyStore, create_key, find_key, hash_secret, revoke_key, rotate_key


def test_a_key_is_stored_only_as_a_hash_and_a_prefix(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key, secret = create_key(session, team="team-a", name="ci")
        key_id = key.id
    assert secret.startswith("vbp_") and len(secret) >= 4 + 43
    with sessions() as session:
        stored = session.get(ApiKey, key_id)
        assert stored is not None
        assert stored.secret_hash == hash_secret(secret)
        assert stored.prefix == secret[:10]
        dump = " ".join(str(v) for v in session.execute(text("SELECT * FROM api_keys")).one())
    assert secret not in dump


def test_find_key_refuses_unknown_revoked_and_expired(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        live, live_secret = create_key(session, team="a")
        dead, dead_secret = create_key(session, team="a")
        old, old_secret = create_key(session, team="a", expires_at=utcnow() - timedelta(seconds=1))
        revoke_key(session, key_id=dead.id)
    with sessions() as session:
        found = find_key(session, secret=live_secret)
        assert found is not None and found.id == live.id
        assert find_key(session, secret=dead_secret) is None
        assert find_key(session, secret=old_secret) is None
        assert find_key(session, secret="vbp_" + "x" * 43) is None


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key, first = create_key(session, team="a")
        rotated = rotate_key(session, key_id=key.id, grace_seconds=3600)
        assert rotated is not None
        second = rotated[1]
    with sessions() as session:
        assert find_key(session, secret=first).id == key.id  # type: ignore[union-attr]
        assert find_key(session, secret=second).id == key.id  # type: ignore[union-attr]
        assert find_key(session, secret=first, now=utcnow() + timedelta(seconds=3601)) is None
        assert find_key(session, secret=second, now=utcnow() + timedelta(seconds=3601)) is not None


def test_key_store_cache_expires_after_its_ttl(sessions: sessionmaker[Session]) -> None:
    store = KeyStore(sessions, ttl=0.3)
    with sessions.begin() as session:
        key, secret = create_key(session, team="a")
    principal = store.lookup(secret)
    assert principal is not None and principal.team == "a"
    with sessions.begin() as session:
        revoke_key(session, key_id=key.id)
    assert store.cached(secret) == (True, principal)  # still trusted inside the TTL
    time.sleep(0.35)
    assert store.cached(secret) == (False, None)
    assert store.lookup(secret) is None


def test_keys_listing_never_holds_secrets(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _, secret = create_key(session, team="a")
    with sessions() as session:
        for key in session.scalars(select(ApiKey)):
            assert secret not in repr(vars(key))
