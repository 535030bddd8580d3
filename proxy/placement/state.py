"""What placement holds, per target, for `vbp models` and `/metrics`: quota, queued tokens, headroom, health and
placements of every catalog deployment and every pooled project/location (VBP_PROJECT_POOLS)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from proxy.catalog.catalog import Catalog
from proxy.catalog.load import load_catalog
from proxy.clock import format_rfc3339, utcnow
from proxy.ledger.models import PlacementTarget
from proxy.placement import claims
from proxy.placement.choice import Target
from proxy.placement.removed import unfinished_jobs
from proxy.settings import Settings

Pools = Mapping[str, Sequence[tuple[str, str]]]


@dataclass(frozen=True)
class Described:
    """A target and what the catalog or the pool says of it."""

    target: Target
    provider: str
    model: str  # "" for a pool member (it serves whatever model the create names)
    where: str  # pool members: the pools naming it


@dataclass(frozen=True)
class TargetState:
    """One target's figures now (`placements`: how many placements it holds in each state, ever)."""

    name: str
    provider: str
    model: str
    where: str
    weight: int
    quota: int | None
    queued_tokens: int
    headroom: int | None
    health: str
    last_outcome: str
    last_outcome_at: datetime | None
    last_error: str
    cooling_until: datetime | None
    placements: dict[str, int] = field(default_factory=dict)
    unfinished_jobs: int = 0  # the ledger's jobs on it not seen to end (pool members: not counted, 0)

    def to_json(self) -> dict[str, Any]:
        """The JSON form `vbp models --json` prints."""
        return {"name": self.name, "provider": self.provider, "model": self.model, "where": self.where,
                "weight": self.weight, "enqueued_token_quota": self.quota, "unfinished_jobs": self.unfinished_jobs,
                "queued_tokens": self.queued_tokens,
                "headroom_tokens": self.headroom, "health": self.health, "last_outcome": self.last_outcome or None,
                "last_outcome_at": format_rfc3339(self.last_outcome_at) if self.last_outcome_at else None,
                "last_error": self.last_error or None,
                "cooling_until": format_rfc3339(self.cooling_until) if self.cooling_until else None,
                "placements": {state: self.placements.get(state, 0) for state in ("held", "placed", "released")}}


def deployment_target(deployment: Any) -> Target:
    """A catalog deployment as placement sees it."""
    return Target(deployment.name, deployment.weight, deployment.enqueued_token_quota)


def described_targets(catalog: Catalog | None, pools: Pools | None = None,
                      aliases: Mapping[str, str] | None = None) -> list[Described]:
    """Every catalog deployment (file order), then every pooled project/location (once, whatever pools name it)."""
    from proxy.providers.vertex.pool_create import target_name

    out = [Described(deployment_target(d), d.provider, d.model, d.where)
           for d in (catalog.deployments if catalog else ())]
    members: dict[str, list[str]] = {}
    for pool, pairs in (pools or {}).items():
        for project, location in pairs:
            members.setdefault(target_name((aliases or {}).get(project, project), location), []).append(pool)
    out += [Described(Target(name), "vertex", "", "pool " + ", ".join(names)) for name, names in members.items()]
    return out


def placement_state(session: Session, catalog: Catalog | None, *, pools: Pools | None = None,
                    aliases: Mapping[str, str] | None = None, now: datetime | None = None) -> list[TargetState]:
    """Each target's quota, queued tokens, headroom, health and placements, read from the ledger now."""
    now = now or utcnow()
    described = described_targets(catalog, pools, aliases)
    targets = [d.target for d in described]
    names = [t.name for t in targets]
    rows = {row.name: row for row in session.scalars(select(PlacementTarget).where(PlacementTarget.name.in_(names)))}
    figures = claims.figures(session, targets, now=now, rows=rows)
    counts = claims.placement_counts(session, names)
    unfinished = unfinished_jobs(session)
    out = []
    for item, figure in zip(described, figures, strict=True):
        row = rows.get(item.target.name)
        out.append(TargetState(
            name=item.target.name, provider=item.provider, model=item.model, where=item.where,
            weight=item.target.weight, quota=figure.quota, queued_tokens=figure.queued, headroom=figure.headroom,
            health=figure.health, last_outcome=row.last_outcome if row else "",
            last_outcome_at=row.last_outcome_at if row else None, last_error=row.last_error if row else "",
            cooling_until=row.open_until if row is not None and figure.health == "cooling" else None,
            placements=counts.get(item.target.name, {}), unfinished_jobs=unfinished.get(item.target.name, 0)))
    return out


def placement_reader(settings: Settings, catalog: Catalog | None = None) -> Callable[[Session], list[TargetState]]:
    """`placement_state` of the configured targets (the catalog, loaded on first use unless given, and the
    pools), for `/metrics`."""
    loaded: list[Catalog] = [catalog] if catalog is not None else []

    def read(session: Session) -> list[TargetState]:
        if not loaded:
            loaded.append(load_catalog(settings.models_file) if settings.models_file else Catalog())
        return placement_state(session, loaded[0], pools=settings.project_pools, aliases=settings.project_aliases)

    return read
