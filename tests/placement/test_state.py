"""What `vbp models` and `/metrics` show of placement: per target, quota, queued tokens, headroom, health and
placements, read from a real ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from proxy.catalog.load import parse_catalog
from proxy.clock import utcnow
from proxy.placement import claims
from proxy.placement.state import deployment_target, placement_reader, placement_state
from proxy.reports.metrics import Metrics
from proxy.settings import Settings

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
CATALOG = parse_catalog("".join(f"""
[[deployment]]
name = "azure-{region}"
provider = "azure"
model = "gpt-4o-mini"
base_url = "https://res-{region}.openai.azure.com"
deployment = "gpt-4o-mini-batch"
api_version = "2024-10-21"
api_key_env = "AZURE_KEY"
enqueued_token_quota = 1000
weight = {weight}
""" for region, weight in (("eastus", 1), ("westus", 2))) + """
[[deployment]]
name = "openai-gpt-4o-mini"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "OPENAI_KEY"
""")
POOLS = {"pool-gemini": (("proj-a", "us-central1"), ("alias-b", "europe-west4"))}
ALIASES = {"alias-b": "proj-b"}


def _fill(sessions: sessionmaker[Session], now: datetime = NOW) -> None:
    targets = [deployment_target(d) for d in CATALOG.deployments]
    with sessions.begin() as session:
        east = claims.claim(session, targets=targets[:1], tokens=300, team="ml", model="gpt-4o-mini", now=now)
        claims.claim(session, targets=targets[1:2], tokens=200, team="ml", model="gpt-4o-mini", now=now)
        claims.release(session, placement_id=east.placement_id, now=now, note="503")
        for _ in range(3):
            claims.record_failure(session, target="azure-eastus", now=now, error="503 Service Unavailable")


def test_the_state_of_every_deployment_and_pooled_project(sessions: sessionmaker[Session]) -> None:
    _fill(sessions)
    with sessions() as session:
        states = placement_state(session, CATALOG, pools=POOLS, aliases=ALIASES, now=NOW + timedelta(seconds=1))
    assert [(s.name, s.provider, s.model, s.quota, s.queued_tokens, s.headroom, s.health, s.placements)
            for s in states] == [
        ("azure-eastus", "azure", "gpt-4o-mini", 1000, 0, 1000, "cooling", {"released": 1}),
        ("azure-westus", "azure", "gpt-4o-mini", 1000, 200, 800, "healthy", {"held": 1}),
        ("openai-gpt-4o-mini", "openai", "gpt-4o-mini", None, 0, None, "healthy", {}),
        ("vertex:proj-a/us-central1", "vertex", "", None, 0, None, "healthy", {}),
        ("vertex:proj-b/europe-west4", "vertex", "", None, 0, None, "healthy", {}),
    ]
    assert states[0].to_json() == {
        "name": "azure-eastus", "provider": "azure", "model": "gpt-4o-mini",
        "where": "https://res-eastus.openai.azure.com/openai/deployments/gpt-4o-mini-batch", "weight": 1,
        "enqueued_token_quota": 1000, "unfinished_jobs": 0, "queued_tokens": 0, "headroom_tokens": 1000,
        "health": "cooling", "last_outcome": "failed",
        "last_outcome_at": "2026-11-30T12:00:00.000000Z", "last_error": "503 Service Unavailable",
        "cooling_until": "2026-11-30T12:00:30.000000Z", "placements": {"held": 0, "placed": 0, "released": 1}}
    assert states[3].where == "pool pool-gemini"


def test_metrics_show_placement(sessions: sessionmaker[Session], database_url: str) -> None:
    _fill(sessions, utcnow())  # read at scrape time: now
    metrics = Metrics()
    metrics.watch_ledger(sessions, placement=placement_reader(Settings(database_url=database_url), CATALOG))
    text = metrics.render().decode()
    for line in ('vbp_placement_queued_tokens{model="gpt-4o-mini",provider="azure",target="azure-westus"} 200.0',
                 'vbp_placement_headroom_tokens{target="azure-westus"} 800.0',
                 'vbp_placement_quota_tokens{target="azure-eastus"} 1000.0',
                 'vbp_placements{state="released",target="azure-eastus"} 1.0',
                 'vbp_placements{state="held",target="azure-westus"} 1.0'):
        assert line in text, line
    assert 'vbp_placement_health{health="cooling",target="azure-eastus"} 1.0' in text
    assert 'vbp_placement_health{health="healthy",target="azure-eastus"} 0.0' in text
    assert 'vbp_placement_headroom_tokens{target="openai-gpt-4o-mini"}' not in text
