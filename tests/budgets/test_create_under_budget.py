"""Creates through the proxy under a budget, against the emulator: refused before the upstream when the
estimate does not fit; otherwise reserved, labelled, bound to the job, and settled at its metered cost."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from proxy.budgets import store
from proxy.clock import utcnow
from proxy.ledger.models import BudgetReservation, Job
from tests.metering.completion.conftest import JOBS, submit, text_line, wait_metered
from tests.providers.vertex.conftest import Proxied, running

# Runs the emulator and a proxy: left out of `make test-fast`.
pytestmark = pytest.mark.slow

LINE = text_line("Hello world!", generationConfig={"maxOutputTokens": 10})  # 3 input tokens, at most 10 output
# gemini-2.5-flash, batch: 3 x 0.15 + 10 x 1.25 per 1M = 12.95 micro-USD per line at most
HIGH_PER_LINE = 3 * 150_000 + 10 * 1_250_000


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("budgets"), poller_enabled=True, poll_interval=0.2) as env:
        with env.sessions.begin() as session:
            # room for exactly one line of LINE
            store.set_budget(session, actor="test", team="team-a", key_id=None, limit_pico=HIGH_PER_LINE,
                             period="month", now=utcnow())
        yield env


def _body(env: Proxied, lines: list[dict[str, object]]) -> dict[str, object]:
    bucket = env.bucket("metering")
    folder = f"budget-{uuid.uuid4().hex[:10]}"
    bucket.blob(f"{folder}/input.jsonl").upload_from_string("".join(json.dumps(x) + "\n" for x in lines))
    return {"displayName": folder, "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://metering/{folder}/*.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://metering/{folder}/out"}}}


def test_a_batch_over_budget_is_refused_before_the_upstream(budgeted: Proxied) -> None:
    before = len(budgeted.emulator_calls())
    with budgeted.client() as client:
        reply = client.post(JOBS, json=_body(budgeted, [LINE, LINE]))
    assert reply.status_code == 429
    assert reply.json() == {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": (
        "Budget exhausted: team team-a has 0.00001295 USD remaining, and this batch is estimated at up to "
        "0.0000259 USD. Nothing was sent upstream.")}}
    assert len(budgeted.emulator_calls()) == before


def test_the_dry_run_says_what_a_create_would_hold(budgeted: Proxied) -> None:
    with budgeted.client() as client:
        reply = client.post("/v1/estimates", json=_body(budgeted, [LINE, LINE]))
    assert reply.status_code == 200, reply.text
    figures = reply.json()
    assert (figures["lines"], figures["input_tokens"], figures["max_output_tokens"]) == (2, 6, 20)
    assert figures["cost_usd"] == {"low": "0.0000009", "high": "0.0000259"}
    assert (figures["budget"]["team"], figures["budget"]["remaining_usd"], figures["budget"]["fits"]) == (
        "team-a", "0.00001295", False)


def test_a_batch_that_fits_is_reserved_bound_and_settled_at_its_cost(budgeted: Proxied) -> None:
    name = submit(budgeted, "gemini-2.5-flash", [LINE])
    with budgeted.sessions() as session:
        job = session.scalars(select(Job).where(Job.name == name)).one()
        held = session.scalars(select(BudgetReservation).where(BudgetReservation.job_pk == job.id)).one()
        assert job.labels["vbp-reservation"] == held.id
        assert (held.amount_pico, held.state) == (HIGH_PER_LINE, "bound")
    job = wait_metered(budgeted, name)
    with budgeted.sessions() as session:
        settled = session.get(BudgetReservation, held.id)
        assert settled is not None and settled.state == "settled"
        [status] = store.list_budgets(session, now=utcnow())
    # 3 input tokens and, with thinking inside the cap of 10, 10 output tokens: exactly the estimate's high
    assert job.cost_pico == HIGH_PER_LINE
    assert (status.spent, status.reserved, status.remaining) == (HIGH_PER_LINE, 0, 0)


def test_budgets_are_administered_by_admin_keys_only(budgeted: Proxied) -> None:
    with budgeted.client() as client:
        reply = client.get("/v1/budgets")
    assert reply.status_code == 403
    assert reply.json()["error"]["status"] == "PERMISSION_DENIED"
    with httpx.Client(base_url=budgeted.proxy.url, timeout=30) as client:
        assert client.get("/v1/budgets").status_code == 401


def test_metrics_show_each_budget(budgeted: Proxied) -> None:
    with httpx.Client(base_url=budgeted.proxy.url, timeout=30) as client:
        text = client.get("/metrics").text
    assert 'vbp_budget_usd{figure="limit",key_id="",team="team-a"} 1.295e-05' in text
