"""The poller inside `vbp serve` finds ended jobs and meters them: every figure checked against the output rows."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from proxy.tenancy.keys import create_key
from proxy.tenancy.team_admin import set_team
from tests.metering.completion.conftest import JOBS, history, submit, submit_to_missing_bucket, text_line, wait_metered
from tests.providers.vertex.conftest import Proxied, running
from tests.support.expected import expected_for, output_rows

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

CACHE = "projects/meter-project/locations/us-central1/cachedContents/123"
AUDIO = {"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(b"\0" * 40_000).decode()}}


@pytest.fixture(scope="module")
def metering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("metering"), extra_models=("gemini-9.9-custom",),
                                           poller_enabled=True, poll_interval=0.2) as env:
        yield env


def check(env: Proxied, name: str, model: str, *, lines: int) -> None:
    job = wait_metered(env, name)
    rows = output_rows(env.stack.storage_client(), str(job.output_directory))
    assert len(rows) == lines
    want = expected_for(rows, model)
    assert (job.lines_succeeded, job.lines_failed, job.lines_malformed) == (want.succeeded, want.failed, 0)
    assert (job.prompt_tokens, job.cached_tokens, job.candidates_tokens, job.thoughts_tokens) == (
        want.prompt, want.cached, want.candidates, want.thoughts)
    assert job.cost_status == "priced"
    assert job.cost_pico == want.cost_pico
    [record] = history(env, job)
    assert record.reason == "meter" and record.cost_pico == want.cost_pico and record.fingerprint
    assert record.pricing_rows and record.pricing_rows[0]["model"] == model


def test_flash_with_cache_audio_thoughts_and_a_failed_row(metering: Proxied) -> None:
    lines = [
        text_line("Hello world!"),
        text_line("Tell me a long story about batch prediction and its costs.", cachedContent=CACHE),
        {"request": {"contents": [{"role": "user", "parts": [{"text": "What is said here?"}, AUDIO]}]}},
        {"request": {"contents": [{"role": "user", "parts": [AUDIO]}], "cachedContent": CACHE}},
        {"request": {"contents": [{"role": "system", "parts": [{"text": "bad role"}]}]}},
        {"custom_id": "x-1", **text_line("Short answer please.", generationConfig={"maxOutputTokens": 3})},
    ]
    name = submit(metering, "gemini-2.5-flash", lines)
    check(metering, name, "gemini-2.5-flash", lines=6)
    job = wait_metered(metering, name)
    # the data really exercised what it claims to: cache, audio, thoughts, a failed row
    assert job.cached_tokens > 0 and job.audio_prompt_tokens == 2 * 96 and job.thoughts_tokens > 0
    assert job.lines_failed == 1


def test_pro_long_context_tier_is_decided_per_line(metering: Proxied) -> None:
    long_text = " ".join(["w"] * 200_001)
    name = submit(metering, "gemini-2.5-pro", [text_line(long_text), text_line("A short question?")])
    check(metering, name, "gemini-2.5-pro", lines=2)


def test_several_output_files_and_an_ignored_incremental_copy(metering: Proxied) -> None:
    lines = [text_line(f"Question {i} about shards?") for i in range(7)]
    name = submit(metering, "gemini-2.0-flash", lines, faults={"output_shards": 3, "incremental_copy": True})
    check(metering, name, "gemini-2.0-flash", lines=7)
    [record] = history(metering, wait_metered(metering, name))
    assert len(record.objects) == 3
    assert not any("incremental_predictions" in o["uri"] for o in record.objects)


def test_failed_row_share_on_flash_lite(metering: Proxied) -> None:
    lines = [text_line(f"Line {i}") for i in range(8)]
    name = submit(metering, "gemini-2.5-flash-lite", lines, faults={"failed_row_share": 0.5})
    check(metering, name, "gemini-2.5-flash-lite", lines=8)
    assert wait_metered(metering, name).lines_failed == 4


@pytest.mark.parametrize("model", ["gemini-embedding-001", "text-embedding-005"])
def test_embedding_jobs(metering: Proxied, model: str) -> None:
    lines = [{"content": "The quick brown fox jumps over the lazy dog."}, {"content": "Batch embeddings, priced."}]
    name = submit(metering, model, lines)
    job = wait_metered(metering, name)
    rows = output_rows(metering.stack.storage_client(), str(job.output_directory))
    want = expected_for(rows, model)
    assert job.lines_succeeded == 2 and job.cost_status == "priced"
    assert job.cost_pico == want.cost_pico
    if model == "gemini-embedding-001":
        assert job.embedding_tokens == sum(r["predictions"][0]["embeddings"]["statistics"]["token_count"]
                                           for r in rows)
    else:
        assert job.input_characters == sum(len(r["instance"]["content"]) for r in rows)


def test_a_failed_job_with_no_output_costs_nothing_and_says_so(metering: Proxied) -> None:
    name = submit(metering, "gemini-2.5-flash", [text_line("never runs")], faults={"fail_jobs": True})
    job = wait_metered(metering, name)
    assert job.state == "JOB_STATE_FAILED"
    assert (job.cost_status, job.cost_pico, job.lines_succeeded) == ("priced", 0, 0)
    [record] = history(metering, job)
    assert record.note == f"ended FAILED with no output file under {job.output_directory}: nothing is billed"


def test_a_job_failed_by_a_missing_bucket_is_settled_at_the_next_poll(metering: Proxied) -> None:
    name, bucket = submit_to_missing_bucket(metering)
    job = wait_metered(metering, name, timeout=20)  # not an hour later: a missing bucket is not "not visible yet"
    assert (job.state, job.metering_state, job.metering_attempts) == ("JOB_STATE_FAILED", "metered", 1)
    assert (job.cost_status, job.cost_pico, job.lines_succeeded, job.lines_failed) == ("priced", 0, 0, 0)
    assert job.error is not None and job.error["code"] == 9
    [record] = history(metering, job)
    assert record.note == (f"ended FAILED; the output bucket gs://{bucket} does not exist, so the job wrote nothing: "
                           "nothing is billed")


def test_a_model_without_a_price_is_unpriced_not_free(metering: Proxied) -> None:
    name = submit(metering, "gemini-9.9-custom", [text_line("Hello there")])
    job = wait_metered(metering, name)
    assert job.cost_status == "unpriced" and job.cost_pico is None
    assert job.lines_succeeded == 1 and job.prompt_tokens == 2


def test_bigquery_output_is_recorded_as_not_meterable_never_as_zero(metering: Proxied) -> None:
    body = {"displayName": "bq", "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "bigquery",
                            "bigquerySource": {"inputUri": "bq://bq-project.dataset.input"}},
            "outputConfig": {"predictionsFormat": "bigquery",
                             "bigqueryDestination": {"outputUri": "bq://bq-project.dataset"}}}
    with metering.sessions.begin() as session:  # a team's jobs may use only the BigQuery datasets it was given
        secret = create_key(session, team="bq-team")[1]
        set_team(session, actor="test", team="bq-team", bq_datasets=["bq-project.dataset"])
    with httpx.Client(base_url=metering.proxy.url, headers={"Authorization": f"Bearer {secret}"}) as client:
        reply = client.post(JOBS, json=body)
    assert reply.status_code == 200, reply.text
    job = wait_metered(metering, reply.json()["name"])
    assert (job.metering_state, job.cost_status, job.cost_pico) == ("unmeterable", "unmeterable", None)
    [record] = history(metering, job)
    assert record.note and "BigQuery" in record.note
