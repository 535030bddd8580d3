"""Per-line costs of OpenAI-door batches, end to end on the emulator, with and without Vertex echoing sibling keys:
`GET /v1/costs/lines?job=<batch id>` and `vbp report lines --job <batch id>` key each line by the caller's
custom_id (found through the batch's line index), every custom_id once; the lines' costs sum to the batch's
metered cost exactly, and each line's cost equals the one computed here from the caller's own line with the
published batch rates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from proxy.cli import cli
from proxy.emulator.stack import FILES_BUCKET
from proxy.ledger.models import Job
from tests.openai_door.conftest import M, chat_line, door_env, embedding_line, jsonl, sdk, wait_for, wait_metered
from tests.openai_door.test_workflow import EMBEDDING_001, FLASH_LITE, costs_by_job, expected_chat_usage, tokens
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

# custom_ids no order, hash or label sanitising could rebuild; the same text on two lines
IDS = ["Zeta/1", "alpha 2", "ünïcode-3", "same-text-4", "same-text-5"]
TEXTS = ["What is the capital of France, and why?", "second question", "third question, a longer one: how long?",
         "repeated", "repeated"]


@pytest.fixture(scope="module", params=["echo", "no-echo"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from door_env(tmp_path_factory.mktemp(f"lines-{request.param}"), echo_keys=request.param == "echo")


def _run(env: Proxied, lines: list[dict[str, Any]], endpoint: str) -> str:
    """Upload the lines, run them as a batch, wait until it is metered; its id."""
    client = sdk(env)
    file = client.files.create(file=("lines.jsonl", jsonl(*lines)), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint=endpoint,  # type: ignore[arg-type]
                                  completion_window="24h")
    done = wait_for(client, batch.id, ("completed", "failed"))
    assert done.status == "completed" and done.error_file_id is None, done
    wait_metered(env, client, batch.id)
    return batch.id


def _lines(env: Proxied, job: str, who: str = "team-a", fmt: str = "jsonl") -> httpx.Response:
    return httpx.get(env.proxy.url + "/v1/costs/lines", params={"job": job, "format": fmt},
                     headers={"Authorization": f"Bearer {env.keys[who]}"}, timeout=30)


def _records(reply: httpx.Response) -> dict[str, dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    records = [json.loads(line) for line in reply.text.splitlines()]
    by_key = {record["key"]: record for record in records}
    assert len(by_key) == len(records), "a custom_id keyed two lines"
    assert sorted(record["line"] for record in records) == list(range(1, len(records) + 1))
    return by_key


def test_a_chat_batchs_lines_carry_their_custom_ids_and_add_up(env: Proxied) -> None:
    lines = [chat_line(i, t, max_tokens=m) for i, t, m in zip(IDS, TEXTS, [3, 50, 7, 4, 4], strict=True)]
    batch_id = _run(env, lines, "/v1/chat/completions")
    records = _records(_lines(env, batch_id))
    assert sorted(records) == sorted(IDS)  # every custom_id exactly once
    for line in lines:
        record = records[line["custom_id"]]
        usage = expected_chat_usage(line)
        assert record["status"] == "succeeded"
        assert record["tokens"] == {"prompt": usage["prompt_tokens"], "cached": 0,
                                    "candidates": usage["completion_tokens"], "thoughts": 0, "tool_use_prompt": 0}
        cost = (usage["prompt_tokens"] * FLASH_LITE[0] + usage["completion_tokens"] * FLASH_LITE[1]) / M
        assert Decimal(record["cost_usd"]) == cost
    total = sum(Decimal(record["cost_usd"]) for record in records.values())
    assert total == Decimal(costs_by_job(env)[batch_id]["cost_usd"]) == Decimal("0.0000088")

    # the native name reads the same lines; another team's key finds neither (Google's envelope)
    with env.sessions() as session:
        name = session.scalars(select(Job.name).where(Job.batch_id == batch_id)).one()
    assert _records(_lines(env, name)) == records
    for ref in (batch_id, name):
        missing = _lines(env, ref, who="team-b")
        assert missing.status_code == 404
        assert missing.json() == {"error": {"code": 404, "message": f"Job {ref} not found.", "status": "NOT_FOUND"}}

    # the CLI, with the ledger's and the bucket's settings, prints the same records (CSV here)
    result = CliRunner().invoke(cli, ["report", "lines", "--job", batch_id, "--format", "csv"],
                                env={"VBP_DATABASE_URL": str(env.sessions.kw["bind"].url),
                                     "VBP_FILES_BUCKET": FILES_BUCKET})
    assert result.exit_code == 0, result.output
    rows = [row.split(",") for row in result.stdout.strip().splitlines()]
    assert rows[0][:2] == ["line", "key"]
    assert {row[1]: Decimal(row[-1]) for row in rows[1:]} == {key: Decimal(r["cost_usd"])
                                                             for key, r in records.items()}


def test_an_embedding_batchs_lines_carry_their_custom_ids_and_add_up(env: Proxied) -> None:
    lines = [embedding_line(i, t) for i, t in zip(IDS, TEXTS, strict=True)]
    batch_id = _run(env, lines, "/v1/embeddings")
    records = _records(_lines(env, batch_id))
    assert sorted(records) == sorted(IDS)
    for line in lines:
        record = records[line["custom_id"]]
        count = tokens(line["body"]["input"])
        assert record["status"] == "succeeded"  # (embedding tokens are not among the report's token kinds)
        assert Decimal(record["cost_usd"]) == count * EMBEDDING_001 / M
    total = sum(Decimal(record["cost_usd"]) for record in records.values())
    assert total == Decimal(costs_by_job(env)[batch_id]["cost_usd"]) == Decimal("0.00000288")
