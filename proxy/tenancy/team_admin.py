"""Setting and showing team policies; the CLI (`vbp teams ...`) and the admin API (`/v1/teams`) both go through here.

A change is written to the ledger at once and reaches running replicas within VBP_TEAM_CACHE_SECONDS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from proxy.clock import utcnow
from proxy.ledger.models import ApiKey, Team
from proxy.providers.vertex.job_fields import restricted_field
from proxy.tenancy.keys import TEAM_RE
from proxy.tenancy.storage_uris import parse_dataset, parse_gcs_prefix
from proxy.tenancy.team_policy import effective_policy


def check_team_name(team: str) -> str:
    """The team name, or ValueError: names are label values, as keys require them."""
    if not isinstance(team, str) or TEAM_RE.fullmatch(team) is None:
        raise ValueError(f"{team!r} is not a team name (lowercase letters, digits, _ and -, at most 63)")
    return team


def set_team(session: Session, *, actor: str, team: str, gcs_prefixes: Sequence[str] | None = None,
             bq_datasets: Sequence[str] | None = None, allowed_fields: Sequence[str] | None = None) -> Team:
    """Replace the lists that are given (None leaves a list as it is); ValueError names a bad value."""
    check_team_name(team)
    prefixes = None if gcs_prefixes is None else _unique(str(parse_gcs_prefix(p)) for p in gcs_prefixes)
    datasets = None if bq_datasets is None else _unique(parse_dataset(d) for d in bq_datasets)
    fields = None if allowed_fields is None else _unique(restricted_field(f) for f in allowed_fields)
    row = session.get(Team, team)
    if row is None:
        row = Team(name=team, gcs_prefixes=[], bq_datasets=[], allowed_fields=[], updated_at=utcnow(),
                   updated_by=actor)
        session.add(row)
    if prefixes is not None:
        row.gcs_prefixes = prefixes
    if datasets is not None:
        row.bq_datasets = datasets
    if fields is not None:
        row.allowed_fields = fields
    row.updated_at, row.updated_by = utcnow(), actor[:64]
    session.flush()
    return row


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def team_view(team: str, row: Team | None, templates: Sequence[str]) -> dict[str, Any]:
    """What `vbp teams show` and `GET /v1/teams/{team}` print: the team's own lists and what it may use in all."""
    policy = effective_policy(team, row, templates)
    return {
        "team": team,
        "gcs_prefixes": list(row.gcs_prefixes) if row else [],
        "bq_datasets": list(row.bq_datasets) if row else [],
        "allowed_fields": list(row.allowed_fields) if row else [],
        "effective_gcs_prefixes": [str(prefix) for prefix in policy.gcs_prefixes],
        "updated_at": row.updated_at.isoformat().replace("+00:00", "Z") if row else None,
        "updated_by": row.updated_by if row else None,
    }


def show_team(session: Session, *, team: str, templates: Sequence[str]) -> dict[str, Any]:
    """One team's view, whether or not it has a row of its own (it then has the templates only)."""
    return team_view(check_team_name(team), session.get(Team, team), templates)


def list_teams(session: Session, *, templates: Sequence[str]) -> list[dict[str, Any]]:
    """Every team the ledger knows: those with a policy of their own and those with keys, by name."""
    rows = {row.name: row for row in session.scalars(select(Team))}
    names = set(rows) | set(session.scalars(select(ApiKey.team).distinct()))
    return [team_view(name, rows.get(name), templates) for name in sorted(names)]
