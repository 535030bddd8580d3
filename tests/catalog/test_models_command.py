"""`vbp models`: the catalog with each deployment's place, quota, unfinished jobs, queued tokens, headroom, health and
placements, read from a ledger written by the ledger's and placement's own functions; and the catalog's error when it
cannot be loaded."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy.orm import Session

from proxy.catalog.load import parse_catalog
from proxy.cli import cli
from proxy.clock import utcnow
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.jobs import record_created
from proxy.ledger.models import OpenAIBatch, OpenAIFile
from proxy.placement import claims
from proxy.placement.state import deployment_target
from proxy.tenancy.keys import Principal, create_key

CATALOG = """\
[[deployment]]
name = "vertex-flash"
provider = "vertex"
model = "gemini-2.5-flash"
project = "my-project"
location = "us-central1"

[[deployment]]
name = "openai-4o-mini"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "OPENAI_KEY"

[[deployment]]
name = "azure-eastus-4o-mini"
provider = "azure"
model = "gpt-4o-mini"
base_url = "https://eastus.example.com"
deployment = "gpt-4o-mini-batch"
api_version = "2024-10-21"
api_key_env = "AZURE_KEY"
enqueued_token_quota = 1000000
weight = 2
"""
_ids = itertools.count(1)


def record(session: Session, key: str, *, deployment: str | None, provider: str, state: str,
           input_bytes: int | None = None) -> None:
    """A job recorded as created on `deployment`, with its OpenAI-door batch and input file when `input_bytes`."""
    n = next(_ids)
    reply = {"name": f"projects/my-project/locations/us-central1/batchPredictionJobs/{n}", "state": state,
             "model": "m", "outputInfo": {"gcsOutputDirectory": f"gs://out/{n}"}}
    job = record_created(session, reply=reply, request={}, principal=Principal(key_id=key, team="team-a"),
                         api_version="v1", project="my-project", location="us-central1", provider=provider,
                         deployment=deployment)
    if input_bytes is not None:
        now = utcnow()
        session.add(OpenAIFile(id=f"file-{n}", team="team-a", key_id=key, purpose="batch", filename="in.jsonl",
                               bytes=input_bytes, lines=1, vertex_lines=1, model="m", endpoint="/v1/chat/completions",
                               input_uri=f"gs://files/{n}", converted_uri="", index_uri="", created_at=now))
        session.flush()
        session.add(OpenAIBatch(id=f"batch_{n}", team="team-a", key_id=key, input_file_id=f"file-{n}",
                                endpoint="/v1/chat/completions", completion_window="24h", job_pk=job.id,
                                created_at=now))
    session.flush()


def vbp_models(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, ["models", *args], env=env, catch_exceptions=False)


def test_models_lists_each_deployment_with_its_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    try:
        with make_sessionmaker(engine).begin() as session:
            key = create_key(session, team="team-a", name="t")[0].id
            # two unfinished jobs on vertex-flash, one that ended (not counted)
            record(session, key, deployment="vertex-flash", provider="vertex", state="JOB_STATE_RUNNING",
                   input_bytes=5_000)
            record(session, key, deployment="vertex-flash", provider="vertex", state="JOB_STATE_PENDING",
                   input_bytes=700)
            record(session, key, deployment="vertex-flash", provider="vertex", state="JOB_STATE_SUCCEEDED",
                   input_bytes=9_999)
            # one on OpenAI; a native-door job (no deployment) is nobody's queue
            record(session, key, deployment="openai-4o-mini", provider="openai", state="JOB_STATE_RUNNING",
                   input_bytes=1_234)
            record(session, key, deployment=None, provider="vertex", state="JOB_STATE_RUNNING")
            # a create in flight holds 300 tokens on the Azure deployment; the OpenAI one failed once
            azure = deployment_target(parse_catalog(CATALOG).deployments[2])
            claims.claim(session, targets=[azure], tokens=300, team="team-a", model="gpt-4o-mini", now=now)
            claims.record_failure(session, target="openai-4o-mini", now=now, error="503 Service Unavailable")
    finally:
        engine.dispose()
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    env = {"VBP_DATABASE_URL": url, "VBP_MODELS_FILE": str(catalog), "COLUMNS": "200"}
    result = vbp_models(env, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    failed_at = listed[1].pop("last_outcome_at")
    assert failed_at.startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
    assert listed == [
        {"name": "vertex-flash", "provider": "vertex", "model": "gemini-2.5-flash",
         "where": "projects/my-project/locations/us-central1", "weight": 1, "enqueued_token_quota": None,
         "unfinished_jobs": 2, "queued_tokens": 0, "headroom_tokens": None, "health": "healthy",
         "last_outcome": None, "last_outcome_at": None, "last_error": None, "cooling_until": None,
         "placements": {"held": 0, "placed": 0, "released": 0}},
        {"name": "openai-4o-mini", "provider": "openai", "model": "gpt-4o-mini", "where": "https://api.openai.com/v1",
         "weight": 1, "enqueued_token_quota": None, "unfinished_jobs": 1, "queued_tokens": 0, "headroom_tokens": None,
         "health": "healthy", "last_outcome": "failed", "last_error": "503 Service Unavailable",
         "cooling_until": None, "placements": {"held": 0, "placed": 0, "released": 0}},
        {"name": "azure-eastus-4o-mini", "provider": "azure", "model": "gpt-4o-mini",
         "where": "https://eastus.example.com/openai/deployments/gpt-4o-mini-batch", "weight": 2,
         "enqueued_token_quota": 1_000_000, "unfinished_jobs": 0, "queued_tokens": 300, "headroom_tokens": 999_700,
         "health": "healthy", "last_outcome": None, "last_outcome_at": None, "last_error": None,
         "cooling_until": None, "placements": {"held": 1, "placed": 0, "released": 0}},
    ]
    assert "OPENAI_KEY" not in result.stdout  # where the key lives is the catalog's business, not the listing's
    table = vbp_models(env).stdout.splitlines()
    assert table[0].split() == ["NAME", "PROVIDER", "MODEL", "WHERE", "WEIGHT", "QUOTA", "UNFINISHED", "QUEUED",
                                "HEADROOM", "HEALTH", "PLACED"]
    assert [line.split() for line in table[1:]] == [
        ["vertex-flash", "vertex", "gemini-2.5-flash", "projects/my-project/locations/us-central1", "1", "-", "2",
         "0", "-", "healthy", "0"],
        ["openai-4o-mini", "openai", "gpt-4o-mini", "https://api.openai.com/v1", "1", "-", "1", "0", "-", "healthy",
         "0"],
        ["azure-eastus-4o-mini", "azure", "gpt-4o-mini", "https://eastus.example.com/openai/deployments/"
         "gpt-4o-mini-batch", "2", "1000000", "0", "300", "999700", "healthy", "0"],
    ]


def test_models_with_a_catalog_needs_an_existing_ledger(tmp_path: Path) -> None:
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    url = f"sqlite:///{tmp_path / 'none' / 'vbp.db'}"
    result = vbp_models({"VBP_MODELS_FILE": str(catalog), "VBP_DATABASE_URL": url})
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"ledger: {url}", f"Error: no ledger at {url}: the file does not exist. Set "
        "VBP_DATABASE_URL to the ledger `vbp serve` uses (or run `vbp db upgrade` to create a new one)."]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["models.toml"]  # nothing created


def test_models_without_a_catalog_or_with_a_malformed_one(tmp_path: Path) -> None:
    unset = vbp_models({"VBP_DEFAULT_PROJECT": "my-project"}, "--json")
    assert (unset.exit_code, unset.stdout) == (0, "[]\n")
    assert unset.stderr == ("no model catalog (VBP_MODELS_FILE is unset): the OpenAI door runs Gemini models on "
                            "Vertex in my-project/us-central1\n")
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG.replace("weight = 2", "weight = 0"))
    bad = vbp_models({"VBP_MODELS_FILE": str(catalog)})
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr == (f"Error: {catalog}:23: deployment 'azure-eastus-4o-mini': field \"weight\": must be a "
                          "whole number of at least 1, not 0\n")

