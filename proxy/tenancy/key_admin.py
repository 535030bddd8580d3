"""Managing keys with an audit trail: every create, revoke and rotate writes a `key_events` row.

The CLI (`vbp keys ...`, actor `cli:<user>`) and the admin HTTP API (`/v1/keys`, actor the admin key's id) both
go through here. Neither the trail nor the views ever hold a secret or its hash; the secret is returned once,
to the caller that asked for it.

Key life, in figures:
- revocation and expiry: a revoked key stops working on every replica within VBP_KEY_CACHE_SECONDS (each
  process trusts a lookup that long); an expired key stops at its expiry instant, cache or not.
- rotation: the new secret works at once; the old one keeps working for the grace period (default 24 h,
  `--grace` / `grace_seconds`) and is refused from its end, cache or not (a process that cached the old secret
  before the rotation trusts that entry for at most VBP_KEY_CACHE_SECONDS, which matters only for a grace
  shorter than that). Rotating again ends the previous grace (within VBP_KEY_CACHE_SECONDS): only the current
  and the immediately preceding secret are ever valid.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from proxy.clock import utcnow
from proxy.ledger.models import ApiKey, KeyEvent
from proxy.tenancy.keys import create_key, revoke_key, rotate_key

DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_LIFETIME = timedelta(days=3650)  # `expires_in`: ten years at most
MAX_GRACE = timedelta(days=30)  # a rotated-out secret lives a month at most
MAX_NAME = 200  # the column's width
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LONGEST_TEXT = 32


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w` or a sum such as `1d12h`; ValueError otherwise."""
    value = text.strip()
    parts = _DURATION.findall(value) if len(value) <= _LONGEST_TEXT else []
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{text[:_LONGEST_TEXT]!r} is not a duration like 30d, 12h or 90m")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds > timedelta.max.total_seconds():
        raise ValueError(f"{value!r} is longer than any date can hold")
    return timedelta(seconds=seconds)


def bounded_duration(value: object, *, field: str, least: timedelta, most: timedelta) -> timedelta:
    """A duration given as text (`30d`) or a whole number of seconds, from `least` to `most`; ValueError naming
    `field` otherwise (a float, a bool, NaN, a negative or a huge number included)."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value).total_seconds()
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        raise ValueError(f"{field} must be a duration such as \"30d\" or a whole number of seconds")
    if not least.total_seconds() <= seconds <= most.total_seconds():  # compared before any timedelta is built
        raise ValueError(f"{field} must be from {least.total_seconds():.0f} seconds to {most.days} days")
    return timedelta(seconds=seconds)


def cli_actor() -> str:
    """`cli:<os user>`: who ran a `vbp keys` command, as far as this machine knows."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        user = "unknown"
    return f"cli:{user}"[:64]


def key_state(key: ApiKey, *, now: datetime | None = None) -> str:
    now = now or utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def key_view(key: ApiKey, *, now: datetime | None = None) -> dict[str, Any]:
    """A key as the CLI and the API show it: scopes, dates and state, never the secret or its hash."""
    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    graced = key.previous_valid_until if key.previous_hash is not None else None
    return {
        "id": key.id, "team": key.team, "name": key.name, "prefix": key.prefix, "admin": key.admin,
        "projects": list(key.projects), "locations": list(key.locations), "models": list(key.models),
        "operations": list(key.operations), "created_at": stamp(key.created_at), "expires_at": stamp(key.expires_at),
        "revoked_at": stamp(key.revoked_at), "previous_secret_valid_until": stamp(graced),
        "state": key_state(key, now=now),
    }


def record_event(session: Session, *, actor: str, action: str, key: ApiKey,
                 detail: dict[str, Any] | None = None) -> KeyEvent:
    """Append one audit row (the caller's transaction commits it with the change it describes)."""
    event = KeyEvent(at=utcnow(), actor=actor[:64], action=action, key_id=key.id, team=key.team, detail=detail or {})
    session.add(event)
    return event


def issue_key(session: Session, *, actor: str, team: str, name: str = "", admin: bool = False,
              projects: Sequence[str] = (), locations: Sequence[str] = (), models: Sequence[str] = (),
              operations: Sequence[str] = (), expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key (ValueError for bad scopes) and audit it; returns the key and its secret, shown once."""
    if len(name) > MAX_NAME:
        raise ValueError(f"name must be at most {MAX_NAME} characters")
    key, secret = create_key(session, team=team, name=name, admin=admin, projects=projects, locations=locations,
                             models=models, operations=operations, expires_at=expires_at)
    view = key_view(key)
    record_event(session, actor=actor, action="create", key=key, detail={
        field: view[field] for field in ("name", "admin", "projects", "locations", "models", "operations",
                                         "expires_at")})
    return key, secret


def revoke(session: Session, *, actor: str, key_id: str) -> ApiKey | None:
    """Revoke a key and audit it; revoking a revoked key changes nothing and records nothing. None if unknown."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return key
    revoke_key(session, key_id=key_id)
    record_event(session, actor=actor, action="revoke", key=key)
    return key


def rotate(session: Session, *, actor: str, key_id: str,
           grace_seconds: float = DEFAULT_GRACE_SECONDS) -> tuple[ApiKey, str] | None:
    """Give a live key a new secret and audit it; None for an unknown, revoked or expired key."""
    if not 0 <= grace_seconds <= MAX_GRACE.total_seconds():  # NaN fails this too
        raise ValueError(f"the grace period must be from 0 seconds to {MAX_GRACE.days} days")
    rotated = rotate_key(session, key_id=key_id, grace_seconds=grace_seconds)
    if rotated is None:
        return None
    key = rotated[0]
    record_event(session, actor=actor, action="rotate", key=key, detail={
        "grace_seconds": grace_seconds, "previous_secret_valid_until": key_view(key)["previous_secret_valid_until"],
        "prefix": key.prefix})
    return rotated


def list_events(session: Session, *, key_id: str | None = None) -> list[KeyEvent]:
    """The audit trail, oldest first (one key's, or every key's)."""
    query = select(KeyEvent).order_by(KeyEvent.id)
    if key_id is not None:
        query = query.where(KeyEvent.key_id == key_id)
    return list(session.scalars(query))


def event_view(event: KeyEvent) -> dict[str, Any]:
    return {"at": event.at.isoformat(), "actor": event.actor, "action": event.action, "key_id": event.key_id,
            "team": event.team, "detail": dict(event.detail)}
