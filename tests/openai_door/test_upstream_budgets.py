"""Budgets hold batches of OpenAI and Azure models on the OpenAI door, with the real `openai` SDK on the emulator's
stand-ins: `POST /v1/estimates` estimates the caller's kept file with figures computed here from its lines and the
pricing table; a create the budget cannot take is refused with 429 in OpenAI's envelope and nothing reaches the
upstream; a create that fits holds exactly the estimate's high, bound to its job, then settled to the metered cost;
racing creates never take a budget below zero."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from proxy.budgets import store
from proxy.budgets.tokens import text_tokens
from proxy.cli import cli
from proxy.clock import utcnow
from proxy.ledger.models import BudgetReservation, Job, OpenAIBatch
from proxy.metering.pricing import PricingTable
from proxy.money import format_usd
from proxy.tenancy.keys import create_key
from tests.emulator.openai_support import SYSTEM, USER
from tests.openai_door.conftest import chat_line, jsonl, said, sdk, wait_for, wait_metered
from tests.openai_door.upstream_support import AZURE_DEPLOYMENT, AZURE_MODEL, OPENAI_MODEL, job_of, upstream_door
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

TABLE = PricingTable.load()
QUESTION = "What is the capital of France, and why?"


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from upstream_door(tmp_path_factory.mktemp("upstream-budgets"))


def _lines(model: str) -> list[dict[str, Any]]:
    """A capped line (max_tokens), one capped by max_completion_tokens, and one with no cap."""
    lines = [chat_line("a", USER, model=model, max_tokens=10), chat_line("b", QUESTION, model=model,
                                                                            max_completion_tokens=25),
             chat_line("c", "One", model=model)]
    lines[0]["body"]["messages"].insert(0, {"role": "system", "content": SYSTEM})
    return lines


def _expected(model: str, lines: list[dict[str, Any]], providers: tuple[str, ...]) -> tuple[int, int, int, int]:
    """(input tokens, output bound, low pUSD, high pUSD) from the lines and the pricing table: high the dearest
    deployment's input + output, low the cheapest's input at its cheaper input rate."""
    prompt = sum(text_tokens(m["content"]) for line in lines for m in line["body"]["messages"])
    maximum = max(TABLE.max_output_tokens(p, model) or 0 for p in providers)
    output = sum(line["body"].get("max_completion_tokens") or line["body"].get("max_tokens") or maximum
                 for line in lines)
    rates = [TABLE.rates_for(p, model, utcnow()) for p in providers]
    assert all(r is not None for r in rates)
    high = max(prompt * r.batch.input + output * r.batch.output for r in rates if r is not None)
    low = min(prompt * min(r.batch.input, r.batch.cached_input) for r in rates if r is not None)
    return prompt, output, low, high


def _estimate(door: Proxied, file_id: str, who: str = "team-a") -> httpx.Response:
    return httpx.post(door.proxy.url + "/v1/estimates", json={"input_file_id": file_id},
                      headers={"Authorization": f"Bearer {door.keys[who]}"}, timeout=30)


def _set_budget(door: Proxied, team: str, pico: int) -> None:
    with door.sessions.begin() as session:
        store.set_budget(session, actor="test", team=team, key_id=None, limit_pico=pico, period="month", now=utcnow())


def _upstream_posts(door: Proxied) -> int:
    """The POSTs (file uploads and batch creates) the OpenAI and Azure stand-ins received."""
    return sum(1 for e in door.stack.request_log
               if e["method"] == "POST" and str(e.get("api", "")).startswith(("openai", "azure")))


@pytest.mark.parametrize(("model", "providers"), [(OPENAI_MODEL, ("openai",)), (AZURE_MODEL, ("azure", "openai"))])
def test_an_openai_model_file_is_estimated_exactly(door: Proxied, model: str, providers: tuple[str, ...],
                                                    tmp_path: Path) -> None:
    lines = _lines(model)
    file = sdk(door).files.create(file=("estimate.jsonl", jsonl(*lines)), purpose="batch")
    prompt, output, low, high = _expected(model, lines, providers)
    maximum = {"gpt-4.1-mini": 32768, "gpt-4o-mini": 16384}[model]
    assert (prompt, output) == (6 + 3 + 10 + 1, 10 + 25 + maximum)
    # gpt-4.1-mini: input 0.20 (cached 0.10), output 0.80 per 1M; gpt-4o-mini: 0.075 (cached too) and 0.30 on both
    assert (format_usd(low), format_usd(high)) == {
        "gpt-4.1-mini": ("0.000002", "0.0262464"), "gpt-4o-mini": ("0.0000015", "0.0049272")}[model]

    reply = _estimate(door, file.id)
    assert reply.status_code == 200, reply.text
    figures = reply.json()
    assert (figures["model"], figures["lines"], figures["malformed_lines"], figures["input_tokens"],
            figures["max_output_tokens"]) == (model, 3, 0, prompt, output)
    assert figures["cost_usd"] == {"low": format_usd(low), "high": format_usd(high)}
    assert figures["budget"] is None

    # `vbp estimate` on the same bytes as a local file, with the door's catalog: the same figures, all of them
    local = tmp_path / "estimate.jsonl"
    local.write_bytes(jsonl(*lines))
    result = CliRunner().invoke(cli, ["estimate", str(local), "--json"],
                                env={"VBP_MODELS_FILE": door.proxy.app.settings.models_file})
    assert result.exit_code == 0, result.output
    assert {**json.loads(result.output), "budget": None} == figures


def test_a_batch_the_budget_cannot_take_is_refused_before_the_upstream(door: Proxied) -> None:
    with door.sessions.begin() as session:
        _, secret = create_key(session, team="team-poor", name="budgeted")
    _set_budget(door, "team-poor", 1_000)  # a thousandth of a millionth of a dollar
    client = sdk(door, key=secret)
    lines = _lines(OPENAI_MODEL)
    file_id = client.files.create(file=("poor.jsonl", jsonl(*lines)), purpose="batch").id
    _, _, _, high = _expected(OPENAI_MODEL, lines, ("openai",))
    before = _upstream_posts(door)
    with pytest.raises(openai.RateLimitError) as caught:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert caught.value.status_code == 429
    assert said(caught.value) == (f"Budget exhausted: team team-poor has 0.000000001 USD remaining, and this batch "
                                  f"is estimated at up to {format_usd(high)} USD. Nothing was sent upstream.")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert _upstream_posts(door) == before  # no file uploaded, no batch created upstream
    with door.sessions() as session:
        assert session.scalars(select(BudgetReservation).where(BudgetReservation.team == "team-poor")).all() == []
        batch = session.scalars(select(OpenAIBatch).where(OpenAIBatch.team == "team-poor")).one()
        assert batch.job_pk is None and batch.errors is not None
        assert batch.errors[0]["code"] == "resource_exhausted"


def test_a_batch_holds_its_high_bound_to_its_job_then_settled_at_the_metered_cost(door: Proxied) -> None:
    with door.sessions.begin() as session:
        key, secret = create_key(session, team="team-rich", name="budgeted")
        key_id = key.id
    _set_budget(door, "team-rich", 10**12)  # one dollar
    client = sdk(door, key=secret)
    lines = _lines(AZURE_MODEL)
    file_id = client.files.create(file=("rich.jsonl", jsonl(*lines)), purpose="batch").id
    _, _, low, high = _expected(AZURE_MODEL, lines, ("azure", "openai"))
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    job = job_of(door, batch.id)
    with door.sessions() as session:
        held = session.scalars(select(BudgetReservation).where(BudgetReservation.team == "team-rich")).one()
        assert (held.job_pk, held.amount_pico, held.low_pico) == (job.id, high, low)
        assert held.state in ("bound", "settled")  # settled once metered, which may already be
        assert (held.project, held.location) == (AZURE_DEPLOYMENT, "azure")  # the first candidate deployment
    # the reservation's label rides in the upstream batch's metadata, for reconciliation to bind a lost create
    created = [json.loads(e["body"]) for e in door.stack.request_log
               if e["method"] == "POST" and str(e["path"]).endswith("/batches")]
    assert created[-1]["metadata"]["vbp-reservation"] == held.id

    assert wait_for(client, batch.id, ("completed", "failed")).status == "completed"
    wait_metered(door, client, batch.id)
    with door.sessions() as session:
        metered = session.get(Job, job.id)
        settled = session.get(BudgetReservation, held.id)
        assert metered is not None and settled is not None and metered.cost_pico is not None
        assert settled.state == "settled" and settled.note == f"metered at {format_usd(metered.cost_pico)} USD"
        status = store.status(session, store.covering(session, team="team-rich", key_id=key_id)[0], now=utcnow())
        assert (status.spent, status.reserved) == (metered.cost_pico, 0)
    assert low <= metered.cost_pico <= high


def test_racing_creates_never_overspend(door: Proxied) -> None:
    with door.sessions.begin() as session:
        _, secret = create_key(session, team="team-race", name="budgeted")
    lines = _lines(OPENAI_MODEL)
    _, _, _, high = _expected(OPENAI_MODEL, lines, ("openai",))
    fits = 5
    _set_budget(door, "team-race", high * fits + high // 2)  # room for five, not six
    client = sdk(door, key=secret)
    file_id = client.files.create(file=("race.jsonl", jsonl(*lines)), purpose="batch").id
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def create() -> None:
        racer = sdk(door, key=secret)
        start.wait()
        try:
            racer.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
            outcomes.append("created")
        except openai.RateLimitError as exc:
            outcomes.append("refused" if said(exc).startswith("Budget exhausted") else said(exc))

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] * fits + ["refused"] * (20 - fits)
    with door.sessions() as session:
        rows = session.scalars(select(BudgetReservation).where(BudgetReservation.team == "team-race")).all()
        assert [r.amount_pico for r in rows] == [high] * fits and all(r.job_pk is not None for r in rows)
        jobs = session.scalars(select(Job).where(Job.team == "team-race")).all()
        assert len(jobs) == fits
    creates = [e for e in door.stack.request_log if e["method"] == "POST" and str(e["path"]).endswith("/batches")
               and json.loads(e["body"])["metadata"]["vbp-team"] == "team-race"]
    assert len(creates) == fits


def _budgeted(door: Proxied, team: str, pico: int) -> openai.OpenAI:
    with door.sessions.begin() as session:
        _, secret = create_key(session, team=team, name="budgeted")
    _set_budget(door, team, pico)
    return sdk(door, key=secret)


def _reservation(door: Proxied, team: str) -> BudgetReservation:
    with door.sessions() as session:
        row = session.scalars(select(BudgetReservation).where(BudgetReservation.team == team)).one()
        session.expunge(row)
        return row


def test_a_create_no_deployment_takes_releases_its_reservation(door: Proxied) -> None:
    client = _budgeted(door, "team-refused", 10**12)
    file_id = client.files.create(file=("refused.jsonl", jsonl(*_lines(OPENAI_MODEL))), purpose="batch").id
    door.stack.set_faults(errors=[{"path": "/openai-api/", "status": 503, "count": 50, "method": "create"}])
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    finally:
        door.stack.set_faults(None)
        with door.sessions.begin() as session:  # the breaker the faults opened: the next tests start anew
            session.execute(text("DELETE FROM placement_targets"))
    assert said(caught.value).startswith(f"No deployment of {OPENAI_MODEL} can take this batch")
    released = _reservation(door, "team-refused")
    assert (released.state, released.job_pk, released.note) == ("released", None,
                                                                "no deployment took the create")
    with door.sessions() as session:
        status = store.status(session, store.covering(session, team="team-refused", key_id="")[0], now=utcnow())
        assert (status.spent, status.reserved, status.remaining) == (0, 0, 10**12)


def test_a_lost_create_has_its_reservation_bound_by_reconciliation(door: Proxied) -> None:
    client = _budgeted(door, "team-lost", 10**12)
    lines = _lines(OPENAI_MODEL)
    _, _, _, high = _expected(OPENAI_MODEL, lines, ("openai",))
    file_id = client.files.create(file=("lost.jsonl", jsonl(*lines)), purpose="batch").id
    with door.sessions.begin() as session:
        session.execute(text("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN "
                             "SELECT RAISE(ABORT, 'the ledger refuses writes (test)'); END"))
    try:
        with pytest.raises(openai.InternalServerError):
            client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    finally:
        with door.sessions.begin() as session:
            session.execute(text("DROP TRIGGER refuse_jobs"))
    held = _reservation(door, "team-lost")
    assert (held.state, held.job_pk, held.amount_pico) == ("held", None, high)  # the create's intent record

    env = {"VBP_DATABASE_URL": str(door.sessions.kw["bind"].url)}
    result = CliRunner().invoke(cli, ["reconcile", "--json", "--min-age", "0s"], env=env)
    assert result.exit_code == 0, result.output
    adopted = [item for item in json.loads(result.stdout) if item["result"] == "adopted"]
    assert [item["team"] for item in adopted] == ["team-lost"]
    bound = _reservation(door, "team-lost")
    with door.sessions() as session:
        job = session.scalars(select(Job).where(Job.name == adopted[0]["name"])).one()
        assert (job.origin, job.labels["vbp-reservation"]) == ("reconcile", held.id)
        assert (bound.state, bound.job_pk) in (("bound", job.id), ("settled", job.id))
