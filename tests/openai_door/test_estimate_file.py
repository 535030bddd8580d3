"""`POST /v1/estimates {"input_file_id": ...}`: the dry run of an OpenAI-door file, estimated from its stored
converted lines like a native create body, in the same JSON, with figures computed here from the caller's lines
(the documented token rule, each line's max tokens or the model's maximum output, the published batch rates); the
create then holds exactly the estimate's high, and `vbp estimate` gives the same figures for the same bytes as a
local file. Another team's file is 404 and errors are in Google's envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from proxy.cli import cli
from proxy.ledger.models import BudgetReservation, Job, OpenAIFile
from tests.openai_door.conftest import M, chat_line, door_env, jsonl, sdk, wait_for
from tests.openai_door.test_workflow import FLASH_LITE, tokens
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

MAX_OUTPUT = 65536  # gemini-2.5-flash-lite's maximum output (pricing table), for a line that sets none
SYSTEM = "You are a helpful assistant."
LINES = [chat_line("a", "Hello world!", max_tokens=10),
         chat_line("b", "What is the capital of France, and why?", max_completion_tokens=25),
         chat_line("c", "One")]
LINES[0]["body"]["messages"].insert(0, {"role": "system", "content": SYSTEM})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from door_env(tmp_path_factory.mktemp("estimates"))


def _estimate(env: Proxied, body: dict[str, object], who: str = "team-a") -> httpx.Response:
    return httpx.post(env.proxy.url + "/v1/estimates", json=body,
                      headers={"Authorization": f"Bearer {env.keys[who]}"}, timeout=30)


def test_a_stored_file_is_estimated_like_a_create_and_the_create_holds_its_high(env: Proxied,
                                                                                tmp_path: Path) -> None:
    client = sdk(env)
    file = client.files.create(file=("estimate.jsonl", jsonl(*LINES)), purpose="batch")
    input_tokens = sum(tokens(m["content"]) for line in LINES for m in line["body"]["messages"])
    max_output = 10 + 25 + MAX_OUTPUT
    low = input_tokens * FLASH_LITE[0] / M
    high = low + max_output * FLASH_LITE[1] / M
    assert (input_tokens, low, high) == (20, Decimal("0.000001"), Decimal("0.0131152"))

    reply = _estimate(env, {"input_file_id": file.id})
    assert reply.status_code == 200, reply.text
    figures = reply.json()
    assert (figures["lines"], figures["malformed_lines"], figures["input_tokens"], figures["max_output_tokens"]) == (
        3, 0, input_tokens, max_output)
    assert figures["cost_usd"] == {"low": "0.000001", "high": "0.0131152"}
    assert figures["model"] == "gemini-2.5-flash-lite" and figures["budget"] is None

    # `vbp estimate` on the same bytes, a local file: the same figures, all of them
    local = tmp_path / "estimate.jsonl"
    local.write_bytes(jsonl(*LINES))
    result = CliRunner().invoke(cli, ["estimate", str(local), "--json"],
                                env={"VBP_MODELS_FILE": env.proxy.app.settings.models_file})
    assert result.exit_code == 0, result.output
    assert {**json.loads(result.output), "budget": None} == figures

    # LiteLLM's file id (the stored gs:// URI, percent-encoded) names the same file
    with env.sessions() as session:
        stored = session.get(OpenAIFile, file.id)
        assert stored is not None
        uri = stored.input_uri
    assert _estimate(env, {"input_file_id": quote(uri, safe="")}).json() == figures

    # under a budget: the estimate says it fits, and the create holds exactly the high
    admin = {"Authorization": f"Bearer {env.keys['admin']}"}
    assert httpx.put(env.proxy.url + "/v1/budgets/team-a", json={"usd": "0.02"}, headers=admin).status_code == 200
    budget = _estimate(env, {"input_file_id": file.id}).json()["budget"]
    assert (budget["team"], budget["remaining_usd"], budget["fits"]) == ("team-a", "0.02", True)
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    with env.sessions() as session:  # read at once: metering later turns the amount into the cost
        job = session.scalars(select(Job).where(Job.batch_id == batch.id)).one()
        held = session.scalars(select(BudgetReservation).where(BudgetReservation.job_pk == job.id)).one()
        assert (held.state, held.amount_pico, held.low_pico) == ("bound", 13_115_200_000, 1_000_000)
    assert int(high * 10**12) == 13_115_200_000
    wait_for(client, batch.id, ("completed", "failed"))
    httpx.delete(env.proxy.url + "/v1/budgets/team-a", headers=admin)


def test_another_teams_file_and_bad_bodies_answer_in_googles_envelope(env: Proxied) -> None:
    file = sdk(env).files.create(file=("mine.jsonl", jsonl(LINES[2])), purpose="batch")
    missing = _estimate(env, {"input_file_id": file.id}, who="team-b")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": 404, "message": f"File {file.id} not found.", "status": "NOT_FOUND"}}
    extra = _estimate(env, {"input_file_id": file.id, "model": "gemini-2.5-pro"})
    assert extra.status_code == 400
    assert extra.json() == {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                      "An estimate of an OpenAI-door file takes only input_file_id (a file id of "
                                      "your team); got input_file_id, model."}}
    assert _estimate(env, {"input_file_id": 7}).status_code == 400
