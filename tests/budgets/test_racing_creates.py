"""Fifty creates at once, through two `vbp serve` replicas on one PostgreSQL ledger, against a budget that fits
exactly ten: ten reach the upstream, forty are refused with 429 before it, and the budget holds ten reservations."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from proxy.budgets import store
from proxy.clock import utcnow
from proxy.ledger.engine import make_engine, make_sessionmaker
from proxy.ledger.models import BudgetReservation, Job
from proxy.tenancy.keys import create_key
from tests.metering.completion.conftest import text_line
from tests.support.postgres import LocalPostgres
from tests.support.replicas import running_replicas

# Runs the emulator and `vbp` processes on PostgreSQL: left out of `make test-fast`.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS = "/v1/projects/race-project/locations/us-central1/batchPredictionJobs"
LINE = text_line("Hello world!", generationConfig={"maxOutputTokens": 10})
HIGH = 3 * 150_000 + 10 * 1_250_000  # the estimate's high for LINE on gemini-2.5-flash (batch), in pUSD
REFUSAL = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": (
    "Budget exhausted: team team-a has 0.00 USD remaining, and this batch is estimated at up to 0.00001295 USD. "
    "Nothing was sent upstream.")}}


def test_fifty_racing_creates_through_two_replicas_let_exactly_ten_through(postgres_server: LocalPostgres,
                                                                           tmp_path: Path) -> None:
    with running_replicas(postgres_server, tmp_path, bucket="race", job_seconds=60) as replicas:
        engine = make_engine(replicas.url)
        sessions = make_sessionmaker(engine)
        try:
            with sessions.begin() as session:
                key = create_key(session, team="team-a")[1]
                store.set_budget(session, actor="test", team="team-a", key_id=None, limit_pico=10 * HIGH,
                                 period="month", now=utcnow())
            replicas.stack.storage_client().create_bucket("race").blob("in.jsonl").upload_from_string(
                json.dumps(LINE) + "\n")
            body = {"model": "publishers/google/models/gemini-2.5-flash",
                    "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://race/in.jsonl"]}},
                    "outputConfig": {"predictionsFormat": "jsonl",
                                     "gcsDestination": {"outputUriPrefix": "gs://race/out"}}}

            def create(i: int) -> httpx.Response:
                url = f"http://127.0.0.1:{replicas.ports[i % 2]}{JOBS}"
                return httpx.post(url, json={**body, "displayName": f"race-{i}"},
                                  headers={"Authorization": f"Bearer {key}"}, timeout=120)

            with ThreadPoolExecutor(max_workers=50) as pool:
                replies = list(pool.map(create, range(50)))

            assert Counter(r.status_code for r in replies) == {200: 10, 429: 40}, [r.text for r in replies]
            assert [r.json() for r in replies if r.status_code == 429] == [REFUSAL] * 40
            creates = [e for e in replicas.stack.request_log
                       if e.get("method") == "POST" and str(e.get("path")).endswith("/batchPredictionJobs")]
            assert len(creates) == 10  # nothing else reached the upstream
            with sessions() as session:
                held = session.scalars(select(BudgetReservation)).all()
                jobs = session.scalars(select(Job)).all()
                [budget] = store.list_budgets(session, now=utcnow())
            assert sorted(r.json()["name"] for r in replies if r.status_code == 200) == sorted(j.name for j in jobs)
            assert sorted((r.state, r.amount_pico, r.job_pk) for r in held) == sorted(
                ("bound", HIGH, job.id) for job in jobs)
            assert (budget.spent, budget.reserved, budget.remaining) == (0, 10 * HIGH, 0)
        finally:
            engine.dispose()
