"""A team's data policy: where its jobs may read and write, and which extra create fields it may use.

Every team's job runs upstream as the same platform identity, so the identity cannot keep teams apart; the
proxy does, by refusing any location outside the team's own. A team's Cloud Storage prefixes are the
VBP_TEAM_GCS_PREFIXES templates (with `{team}` replaced by its name) plus its own (`vbp teams set`); its
BigQuery datasets and allowed fields are its own only. Nothing configured means nothing allowed.

Policies are read from the ledger and trusted for VBP_TEAM_CACHE_SECONDS (at most 60), so a change made on one
replica reaches every replica within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import Team
from proxy.tenancy.storage_uris import GcsUri, parse_gcs_prefix

TEAM_PLACEHOLDER = "{team}"


def expand_template(template: str, team: str) -> GcsUri:
    """A VBP_TEAM_GCS_PREFIXES template for one team; ValueError when the result is not a gs:// folder."""
    rest = template.replace(TEAM_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise ValueError(f"{template!r}: the only placeholder is {TEAM_PLACEHOLDER}")
    try:
        return parse_gcs_prefix(template.replace(TEAM_PLACEHOLDER, team))
    except ValueError as exc:
        raise ValueError(f"{template!r} is not a gs://bucket/prefix/ template: {exc}") from None


def parse_templates(text: str) -> tuple[str, ...]:
    """VBP_TEAM_GCS_PREFIXES: comma-separated templates, each checked with a sample team name."""
    templates = tuple(part.strip() for part in text.split(",") if part.strip())
    for template in templates:
        expand_template(template, "team")
    return templates


@dataclass(frozen=True)
class TeamPolicy:
    """What one team may name: Cloud Storage folders, BigQuery datasets (`project.dataset`), restricted fields."""

    team: str
    gcs_prefixes: tuple[GcsUri, ...] = ()
    bq_datasets: frozenset[str] = frozenset()
    allowed_fields: frozenset[str] = frozenset()


def effective_policy(team: str, row: Team | None, templates: Sequence[str]) -> TeamPolicy:
    """The templates for `team` plus its own row, duplicates removed, in a stable order."""
    prefixes = [expand_template(template, team) for template in templates]
    if row is not None:
        prefixes += [parse_gcs_prefix(prefix) for prefix in row.gcs_prefixes]
    return TeamPolicy(team=team, gcs_prefixes=tuple(dict.fromkeys(prefixes)),
                      bq_datasets=frozenset(row.bq_datasets if row else ()),
                      allowed_fields=frozenset(row.allowed_fields if row else ()))


class TeamPolicies:
    """Team policies with a short per-process cache (blocking: call `load` in a thread)."""

    def __init__(self, sessions: sessionmaker[Session], *, templates: Sequence[str], ttl: float) -> None:
        self._sessions = sessions
        self.templates = tuple(templates)
        self._ttl = ttl
        self._cache: dict[str, tuple[float, TeamPolicy]] = {}
        self._lock = threading.Lock()

    def cached(self, team: str) -> TeamPolicy | None:
        entry = self._cache.get(team)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def load(self, team: str) -> TeamPolicy:
        """The team's policy, from the cache while it is fresh, else from the ledger."""
        policy = self.cached(team)
        if policy is not None:
            return policy
        with self._sessions() as session:
            policy = effective_policy(team, session.get(Team, team), self.templates)
        with self._lock:
            self._cache[team] = (time.monotonic() + self._ttl, policy)
        return policy
