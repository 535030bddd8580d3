"""API keys: generation, hashed storage, constant-time lookup with a short cache, revocation and rotation.

A key is `vbp_` + 32 random bytes (base64url). Only its SHA-256 and a short display prefix are stored: the
secret has 256 bits of entropy, so a fast hash is as safe as a slow one and keeps lookups cheap.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from anyio import to_thread
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger.models import ApiKey
from proxy.providers.vertex.resources import valid_location, valid_project
from proxy.settings import default

KEY_PREFIX = "vbp_"
OPERATIONS = ("create", "read", "cancel", "delete")
# A team name is stamped on jobs as a label value as is, so it must already be one: two names that sanitised to
# the same label would share each other's jobs in list calls.
TEAM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_MODEL_PATTERN_RE = re.compile(r"[A-Za-z0-9._@*?\[\]!-]{1,200}")


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[: len(KEY_PREFIX) + 6]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, team and scopes (never the secret)."""

    key_id: str
    team: str
    admin: bool = False
    projects: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()
    expires_at: datetime | None = None

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key_id=key.id, team=key.team, admin=key.admin, projects=tuple(key.projects),
                   locations=tuple(key.locations), models=tuple(key.models), operations=tuple(key.operations),
                   expires_at=key.expires_at)


def create_key(session: Session, *, team: str, name: str = "", admin: bool = False,
               projects: Sequence[str] = (), locations: Sequence[str] = (), models: Sequence[str] = (),
               operations: Sequence[str] = (), expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is shown once and never stored."""
    check_scopes(team=team, projects=projects, locations=locations, models=models, operations=operations)
    secret = generate_secret()
    key = ApiKey(id="key_" + secrets.token_hex(6), team=team, name=name, prefix=display_prefix(secret),
                 secret_hash=hash_secret(secret), admin=admin, projects=list(projects), locations=list(locations),
                 models=list(models), operations=list(operations), created_at=utcnow(), expires_at=expires_at)
    session.add(key)
    session.flush()
    return key, secret


def check_scopes(*, team: str, projects: Sequence[str] = (), locations: Sequence[str] = (),
                 models: Sequence[str] = (), operations: Sequence[str] = ()) -> None:
    """Raise ValueError, naming the culprit, unless every scope value is one the request path can carry."""
    if not TEAM_RE.fullmatch(team):
        raise ValueError(f"team {team!r} must be 1-63 lowercase letters, digits, '-' or '_' (a Vertex label value)")
    bad = [p for p in projects if not valid_project(p)]
    if bad:
        raise ValueError(f"invalid project: {', '.join(bad)}")
    bad = [loc for loc in locations if not valid_location(loc)]
    if bad:
        raise ValueError(f"invalid location: {', '.join(bad)}")
    bad = [m for m in models if not _MODEL_PATTERN_RE.fullmatch(m)]
    if bad:
        raise ValueError(f"invalid model pattern (a publisher model id such as gemini-2.5-*): {', '.join(bad)}")
    unknown = set(operations) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"unknown operations: {', '.join(sorted(unknown))}; known: {', '.join(OPERATIONS)}")


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(session: Session, *, key_id: str) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def rotate_key(session: Session, *, key_id: str, grace_seconds: float) -> tuple[ApiKey, str] | None:
    """Give the key a new secret; the old one keeps working for `grace_seconds` (a secret from an earlier
    rotation stops at once). None for an unknown, revoked or expired key."""
    now = utcnow()
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    if grace_seconds < 0:
        raise ValueError("the grace period cannot be negative")
    secret = generate_secret()
    key.previous_hash = key.secret_hash
    key.previous_valid_until = now + timedelta(seconds=grace_seconds)
    key.secret_hash = hash_secret(secret)
    key.prefix = display_prefix(secret)
    return key, secret


def find_key(session: Session, *, secret: str, now: datetime | None = None) -> ApiKey | None:
    """The live key whose current (or still-graced previous) secret is `secret`, else None."""
    now = now or utcnow()
    digest = hash_secret(secret)
    key = session.scalars(
        select(ApiKey).where(or_(ApiKey.secret_hash == digest, ApiKey.previous_hash == digest))
    ).first()
    if key is None:
        # Compare anyway so a miss costs what a hit costs.
        hmac.compare_digest(digest, "0" * 64)
        return None
    current = hmac.compare_digest(key.secret_hash, digest)
    previous = key.previous_hash is not None and hmac.compare_digest(key.previous_hash, digest)
    if previous and not current and (key.previous_valid_until is None or key.previous_valid_until <= now):
        return None
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    return key


@dataclass
class KeyStore:
    """Key lookups for the request path, cached for `ttl` seconds per process.

    A revocation, expiry or rotation therefore takes effect on every replica within `ttl` seconds.
    Entries are keyed by the hash, so no secret is held in memory longer than a request.
    """

    sessions: sessionmaker[Session]
    ttl: float = field(default_factory=partial(default, "key_cache_seconds"))
    _cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: dict[str, asyncio.Future[Principal | None]] = field(default_factory=dict)

    def cached(self, secret: str) -> tuple[bool, Principal | None]:
        """(hit, principal) from the cache alone: cheap enough to call on the event loop."""
        entry = self._cache.get(hash_secret(secret))
        if entry is None or entry[0] < time.monotonic():
            return False, None
        principal = entry[1]
        if principal is not None and principal.expires_at is not None and principal.expires_at <= utcnow():
            return True, None
        return True, principal

    def lookup(self, secret: str) -> Principal | None:
        """Look the key up in the database (blocking) and cache the answer, a miss included."""
        with self.sessions() as session:
            key = find_key(session, secret=secret)
            principal = Principal.of(key) if key is not None else None
            if key is not None and principal is not None and key.previous_valid_until is not None \
                    and not hmac.compare_digest(key.secret_hash, hash_secret(secret)):
                # A rotated-out secret: its cache entry must not outlive the grace period.
                ends = key.previous_valid_until
                principal = replace(principal, expires_at=min(ends, principal.expires_at or ends))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[hash_secret(secret)] = (time.monotonic() + self.ttl, principal)
        return principal

    async def lookup_shared(self, secret: str) -> Principal | None:
        """`lookup` in a worker thread, one at a time per key: when a busy key's entry expires, the requests that
        find it expired together wait for a single database query instead of each running its own."""
        digest = hash_secret(secret)
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(digest)
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(to_thread.run_sync(self.lookup, secret))
            self._inflight[digest] = pending

            def done(task: asyncio.Future[Principal | None], digest: str = digest) -> None:
                if self._inflight.get(digest) is task:
                    del self._inflight[digest]
                if not task.cancelled():
                    task.exception()  # seen, even when every waiter gave up

            pending.add_done_callback(done)
        # shield: one caller giving up must not cancel the lookup the others wait for.
        return await asyncio.shield(pending)
