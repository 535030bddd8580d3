"""Key management on both databases: the audit trail of every change, and the rules of rotation and scopes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger.models import KeyEvent
from proxy.tenancy.key_admin import issue_key, key_view, list_events, parse_duration, revoke, rotate
from proxy.tenancy.keys import KeyStore, check_scopes, find_key, hash_secret


def test_every_change_is_audited_and_nothing_secret_is(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key, first = issue_key(session, actor="key_admin00001", team="team-a", name="ci", projects=["proj-1"],
                               operations=["read"])
        key_id = key.id
    with sessions.begin() as session:
        rotated = rotate(session, actor="cli:alice", key_id=key_id, grace_seconds=3600)
        assert rotated is not None
        second = rotated[1]
    with sessions.begin() as session:
        assert revoke(session, actor="cli:bob", key_id=key_id) is not None
        assert revoke(session, actor="cli:bob", key_id=key_id) is not None  # already revoked: no new event
        assert revoke(session, actor="cli:bob", key_id="key_unknown") is None
    with sessions() as session:
        events = list_events(session, key_id=key_id)
        assert [(e.actor, e.action, e.key_id, e.team) for e in events] == [
            ("key_admin00001", "create", key_id, "team-a"), ("cli:alice", "rotate", key_id, "team-a"),
            ("cli:bob", "revoke", key_id, "team-a")]
        assert events[0].detail == {"name": "ci", "admin": False, "projects": ["proj-1"], "locations": [], "models": [],
                                    "operations": ["read"], "expires_at": None}
        assert events[1].detail["grace_seconds"] == 3600 and events[1].detail["prefix"] == second[:10]
        assert events[0].at <= events[1].at <= events[2].at
        dump = json.dumps([list(map(str, row)) for row in session.execute(text("SELECT * FROM key_events"))])
    for secret in (first, second):
        assert secret not in dump and hash_secret(secret) not in dump


def test_a_revoked_or_expired_key_cannot_be_rotated(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dead, _ = issue_key(session, actor="cli:t", team="t")
        old, _ = issue_key(session, actor="cli:t", team="t", expires_at=utcnow() - timedelta(seconds=1))
        revoke(session, actor="cli:t", key_id=dead.id)
    with sessions.begin() as session:
        assert rotate(session, actor="cli:t", key_id=dead.id) is None
        assert rotate(session, actor="cli:t", key_id=old.id) is None
        assert rotate(session, actor="cli:t", key_id="key_unknown") is None
    with sessions() as session:
        assert [e.action for e in session.scalars(select(KeyEvent).order_by(KeyEvent.id))] == [
            "create", "create", "revoke"]


def test_rotating_again_ends_the_previous_grace_at_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key, first = issue_key(session, actor="cli:t", team="t")
        second = rotate(session, actor="cli:t", key_id=key.id, grace_seconds=3600)[1]  # type: ignore[index]
        third = rotate(session, actor="cli:t", key_id=key.id, grace_seconds=3600)[1]  # type: ignore[index]
    with sessions() as session:
        assert find_key(session, secret=first) is None
        assert find_key(session, secret=second) is not None and find_key(session, secret=third) is not None


def test_a_cached_rotated_out_secret_expires_with_its_grace(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key, old = issue_key(session, actor="cli:t", team="t", expires_at=utcnow() + timedelta(days=1))
        rotated = rotate(session, actor="cli:t", key_id=key.id, grace_seconds=600)
        assert rotated is not None
        ends = key.previous_valid_until
        expires = key.expires_at
    store = KeyStore(sessions, ttl=3600)
    graced, current = store.lookup(old), store.lookup(rotated[1])
    assert graced is not None and graced.expires_at == ends
    assert current is not None and current.expires_at == expires


@pytest.mark.parametrize(("scopes", "words"), [
    ({"team": "Team A"}, "team 'Team A'"),
    ({"team": ""}, "team ''"),
    ({"team": "t" * 64}, "must be 1-63"),
    ({"team": "t", "operations": ["read", "list"]}, "unknown operations: list"),
    ({"team": "t", "projects": ["ok-project", "Bad_Project"]}, "invalid project: Bad_Project"),
    ({"team": "t", "locations": ["us-central1/x"]}, "invalid location"),
    ({"team": "t", "models": ["gemini 2"]}, "invalid model pattern"),
])
def test_scopes_are_checked_when_a_key_is_made(scopes: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        check_scopes(**scopes)


def test_a_refused_key_leaves_no_trace(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, pytest.raises(ValueError, match="unknown operations"):
        issue_key(session, actor="cli:t", team="t", operations=["write"])
    with sessions() as session:
        assert list_events(session) == [] and session.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0


def test_views_never_show_a_secret_or_a_hash(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        key, secret = issue_key(session, actor="cli:t", team="t", admin=True, models=["gemini-*"])
        view = key_view(key)
    assert view["state"] == "active" and view["admin"] is True and view["models"] == ["gemini-*"]
    assert secret not in json.dumps(view) and hash_secret(secret) not in json.dumps(view)


@pytest.mark.parametrize(("text_", "seconds"), [("90s", 90), ("15m", 900), ("1d12h", 129600), ("2w", 1209600)])
def test_durations(text_: str, seconds: int) -> None:
    assert parse_duration(text_).total_seconds() == seconds


@pytest.mark.parametrize("text_", ["", "10", "1y", "1d 2h", "-1d", "soon"])
def test_bad_durations(text_: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text_)
