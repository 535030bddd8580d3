"""Per-line costs of metered jobs (real metering of files in fake-gcs-server): the lines add up to the job's figure
to the last picodollar, each line's cost is computed again here from the line alone (tests/support/expected), and
the metering and the job's end each wrote one webhook event in the outbox."""

from __future__ import annotations

import copy
import csv
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import xxhash
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.emulator.storage import FakeGcsServer
from proxy.errors import FailedPrecondition, NotFound
from proxy.ledger import jobs as ledger
from proxy.ledger.models import ApiKey, Job, WebhookEvent
from proxy.metering.job_meter import JobMeter
from proxy.metering.pricing import PricingTable
from proxy.money import format_usd
from proxy.reports.line_costs import export_blocks, find_job, line_costs, line_source
from proxy.tenancy.keys import Principal
from tests.support.expected import expected_for

pytestmark = pytest.mark.slow  # fake-gcs-server

DATA = Path(__file__).resolve().parents[1] / "data" / "vertex-predictions.jsonl"
TEAM_A = Principal(key_id="key_a", team="team-a")


def _variants() -> list[dict[str, Any]]:
    """The fixture's good row with cache, thinking, audio and tool-use counts (what the tiers and rates split on)."""
    base = json.loads(DATA.read_text().splitlines()[0])
    rows = []
    for prompt, cached, thoughts, audio, audio_cached, tool in [(1000, 400, 300, 0, 0, 0), (5000, 1000, 0, 800, 200, 0),
                                                               (77, 0, 12, 0, 0, 31), (300_000, 0, 5, 0, 0, 0)]:
        row = copy.deepcopy(base)
        usage = row["response"]["usageMetadata"]
        usage.update(promptTokenCount=prompt, cachedContentTokenCount=cached, thoughtsTokenCount=thoughts,
                     toolUsePromptTokenCount=tool, candidatesTokenCount=200,
                     promptTokensDetails=[{"modality": "TEXT", "tokenCount": prompt - audio}]
                     + ([{"modality": "AUDIO", "tokenCount": audio}] if audio else []),
                     cacheTokensDetails=[{"modality": "AUDIO", "tokenCount": audio_cached}] if audio_cached else [])
        row["request"]["contents"][0]["parts"][0]["text"] = f"variant {prompt}"
        rows.append(row)
    return rows


@pytest.fixture()
def client(fake_gcs: FakeGcsServer) -> storage.Client:
    return storage.Client(project="test", credentials=AnonymousCredentials())


def _metered_job(sessions: sessionmaker[Session], client: storage.Client, model: str,
                 files: dict[str, bytes]) -> Job:
    bucket = client.create_bucket(f"lines-{uuid.uuid4().hex[:12]}")
    folder = "out/prediction-model-2026-05-18T00:00:00.000000Z"
    for name, data in files.items():
        bucket.blob(f"{folder}/{name}").upload_from_string(data)
    reply = {"name": f"projects/123/locations/us-central1/batchPredictionJobs/{uuid.uuid4().int % 10**19}",
             "state": "JOB_STATE_SUCCEEDED", "model": f"publishers/google/models/{model}",
             "createTime": "2026-11-01T00:00:00Z", "outputInfo": {"gcsOutputDirectory": f"gs://{bucket.name}/{folder}"}}
    with sessions.begin() as session:
        if session.get(ApiKey, TEAM_A.key_id) is None:
            session.add(ApiKey(id=TEAM_A.key_id, team="team-a", prefix="vbp_a", secret_hash="a" * 64,
                               created_at=utcnow()))
            session.flush()
        job = ledger.record_created(session, reply=reply, request={}, principal=TEAM_A, api_version="v1",
                                    project="p", location="us-central1", origin="reconcile")
        name = job.name
    meter = JobMeter(sessions, pricing=PricingTable.load(), storage_factory=lambda: client)
    try:
        [outcome] = meter.meter_due(name=name, force=True)
    finally:
        meter.close()
    assert outcome.result == "metered", outcome.detail
    with sessions() as session:
        return session.scalars(select(Job).where(Job.name == name)).one()


def _lines_of(files: dict[str, bytes]) -> list[bytes]:
    return [line.rstrip(b"\r") for name in sorted(files) for line in files[name].split(b"\n") if line.strip()]


@pytest.mark.parametrize("model", ["gemini-2.5-flash-lite", "gemini-2.5-flash", "gemini-2.5-pro"])
def test_lines_sum_to_the_job_and_each_line_is_priced_from_itself(sessions: sessionmaker[Session],
                                                                   client: storage.Client, model: str) -> None:
    variants = [json.dumps(row, separators=(",", ":")).encode() for row in _variants()]
    files = {"predictions_0002.jsonl": b"\n".join(variants[2:]) + b"\r\n\n  \n",
             "predictions_0001.jsonl": DATA.read_bytes() + b"\n".join(variants[:2])}  # no final newline
    job = _metered_job(sessions, client, model, files)
    assert job.cost_pico is not None and job.cost_pico > 0
    with sessions() as session:
        source = line_source(session, job=find_job(session, ref=job.name, principal=TEAM_A),
                             pricing=PricingTable.load())
    lines = list(line_costs(client, source))
    raw = _lines_of(files)
    assert [line.line for line in lines] == list(range(1, len(raw) + 1)) and len(raw) == 7
    assert sum(line.cost_pico or 0 for line in lines) == job.cost_pico  # to the last picodollar
    for line, text in zip(lines, raw, strict=True):
        row = json.loads(text)
        assert line.cost_pico == expected_for([row], model).cost_pico
        assert line.usage.kind == ("failed" if row.get("status") else "succeeded")
        echoed = msgspec.json.decode(text, type=dict[str, msgspec.Raw])["request"]
        assert line.key == "req_" + xxhash.xxh3_128_hexdigest(bytes(echoed))
    usage = json.loads(raw[3])["response"]["usageMetadata"]
    assert lines[3].tokens() == {"prompt": 1000, "cached": 400, "candidates": 200, "thoughts": 300,
                                 "tool_use_prompt": 0} == {"prompt": usage["promptTokenCount"],
                                                           "cached": usage["cachedContentTokenCount"],
                                                           "candidates": usage["candidatesTokenCount"],
                                                           "thoughts": usage["thoughtsTokenCount"],
                                                           "tool_use_prompt": 0}
    # both formats carry the same exact figures
    records = [json.loads(x) for x in b"".join(export_blocks("jsonl", lines)).splitlines()]
    assert sum(Decimal(r["cost_usd"]) for r in records) == Decimal(format_usd(job.cost_pico))
    assert records[2] == {"line": 3, "key": lines[2].key, "status": "failed", "cost_usd": "0.00",
                          "tokens": {"prompt": 0, "cached": 0, "candidates": 0, "thoughts": 0, "tool_use_prompt": 0}}
    table = list(csv.DictReader(io.StringIO(b"".join(export_blocks("csv", lines)).decode())))
    assert [row["cost_usd"] for row in table] == [r["cost_usd"] for r in records]
    assert table[3]["tokens_thoughts"] == "300"
    # the outbox: the job's end and its metering, one event each, the figure as an exact string
    with sessions() as session:
        events = {e.type: e.payload["data"] for e in session.scalars(select(WebhookEvent))}
    assert sorted(events) == ["job.metered", "job.succeeded"]
    assert events["job.metered"]["cost_usd"] == format_usd(job.cost_pico)
    assert events["job.metered"]["tokens"]["prompt"] == job.prompt_tokens
    assert events["job.succeeded"]["job"] == job.name and events["job.succeeded"]["model"] == model


def test_another_teams_job_is_missing_and_an_unmetered_one_has_no_lines(sessions: sessionmaker[Session],
                                                                          client: storage.Client) -> None:
    job = _metered_job(sessions, client, "gemini-2.5-flash-lite", {"p.jsonl": DATA.read_bytes()})
    with sessions() as session:
        with pytest.raises(NotFound) as missing:
            find_job(session, ref=job.name, principal=Principal(key_id="key_b", team="team-b"))
        assert missing.value.message == f"Job {job.name} not found."
        assert find_job(session, ref=job.name, principal=Principal(key_id="adm", team="x", admin=True)).id == job.id
        row = session.get(Job, job.id)
        assert row is not None
        row.metering_state = None
        with pytest.raises(FailedPrecondition) as waiting:
            line_source(session, job=row, pricing=PricingTable.load())
        assert waiting.value.message == f"Job {job.name} is not metered yet: its lines have no figures."
