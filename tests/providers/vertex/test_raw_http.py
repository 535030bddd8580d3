"""The five calls as curl users make them: raw HTTP, native payloads, the sample create body as is."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from proxy.ledger.models import Job, JobEvent, RequestLog
from proxy.providers.vertex.states import TERMINAL_STATES, parse_state
from tests.providers.vertex.conftest import ALIAS, LOCATION, REAL_PROJECT, SAMPLES, Proxied

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

COLLECTION = f"/v1/projects/{ALIAS}/locations/{LOCATION}/batchPredictionJobs"


def upload_sample_input(proxied: Proxied) -> None:
    bucket = proxied.bucket("my-bucket")
    bucket.blob("input.jsonl").upload_from_filename(str(SAMPLES / "vertex-batch-input.jsonl"))


def wait_terminal(client, path: str, timeout: float = 20) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(path).json()
        if parse_state(job["state"]) in TERMINAL_STATES or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_sample_create_body_through_the_alias_then_every_call_is_in_the_ledger(proxied: Proxied) -> None:
    upload_sample_input(proxied)
    body = (SAMPLES / "create-job.json").read_bytes()
    with proxied.client("team-a") as client:
        reply = client.post(COLLECTION, content=body, headers={"content-type": "application/json"})
        assert reply.status_code == 200, reply.text
        job = reply.json()
        name = job["name"]
        project_number, job_id = name.split("/")[1], name.split("/")[-1]
        assert project_number.isdigit() and len(job_id) == 19

        # The ledger row was committed before the reply left.
        with proxied.sessions() as session:
            row = session.scalars(select(Job).where(Job.name == name)).one()
            assert (row.team, row.key_id, row.project, row.location) == (
                "team-a", proxied.key_ids["team-a"], REAL_PROJECT, LOCATION)
            assert row.model_id == "gemini-1.5-flash"
            assert row.input_uris == ["gs://my-bucket/input.jsonl"]
            assert row.output_prefix == "gs://my-bucket/output/"
            assert row.state == "JOB_STATE_PENDING"
            assert row.labels["vbp-team"] == "team-a"

        # What reached Vertex: the real project, the owner's labels, Google's token and not the caller's key.
        create_call = [c for c in proxied.emulator_calls() if c["method"] == "POST"][-1]
        assert create_call["path"] == f"/v1/projects/{REAL_PROJECT}/locations/{LOCATION}/batchPredictionJobs"
        sent = json.loads(str(create_call["body"]))
        model = f"projects/{REAL_PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-1.5-flash"
        assert sent["model"] == model
        assert sent["labels"] == {"vbp-team": "team-a", "vbp-key": proxied.key_ids["team-a"]}
        headers = create_call["headers"]
        assert isinstance(headers, dict)
        assert proxied.keys["team-a"] not in json.dumps(headers)
        assert headers["authorization"].startswith("Bearer ") and "vbp_" not in headers["authorization"]

        # get by the alias and by the project number Vertex put in the name
        by_alias = client.get(f"{COLLECTION}/{job_id}")
        assert by_alias.status_code == 200 and by_alias.json()["name"] == name
        done = wait_terminal(client, f"/v1/{name}")
        assert done["state"] == "JOB_STATE_SUCCEEDED"
        listed = client.get(COLLECTION, params={"pageSize": 50})
        assert listed.status_code == 200
        assert name in [j["name"] for j in listed.json()["batchPredictionJobs"]]

        cancel = client.post(f"/v1/{name}:cancel")
        assert cancel.status_code == 400 and cancel.json()["error"]["status"] == "FAILED_PRECONDITION"
        deleted = client.delete(f"{COLLECTION}/{job_id}")
        assert deleted.status_code == 200 and deleted.json()["done"] is True

    with proxied.sessions() as session:
        row = session.scalars(select(Job).where(Job.name == name)).one()
        assert row.state == "JOB_STATE_SUCCEEDED"
        assert row.deleted_at is not None
        assert row.succeeded_count == 2 and row.failed_count == 0
        assert row.output_directory and row.output_directory.startswith("gs://my-bucket/output/prediction-model-")
        states = [e.state for e in session.scalars(select(JobEvent).where(JobEvent.job_pk == row.id)
                                                   .order_by(JobEvent.id))]
        assert states[0] == "JOB_STATE_PENDING" and "JOB_STATE_SUCCEEDED" in states
        sources = {e.source for e in session.scalars(select(JobEvent).where(JobEvent.job_pk == row.id))}
        assert {"create", "delete"} <= sources
    deadline = time.monotonic() + 10  # the request log is written in batches, off the request path
    while True:
        with proxied.sessions() as session:
            routes = {r.route for r in session.scalars(select(RequestLog).where(RequestLog.job_name == name))}
        if {"create", "get", "delete"} <= routes or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {"create", "get", "delete"} <= routes
    with proxied.sessions() as session:
        for r in session.scalars(select(RequestLog)):
            assert proxied.keys["team-a"] not in json.dumps([r.key_id, r.route, r.error, r.job_name])


def test_cancel_of_a_running_job_is_recorded(proxied: Proxied) -> None:
    upload_sample_input(proxied)
    body = json.loads((SAMPLES / "create-job.json").read_text())
    body["displayName"] = "to-cancel"
    with proxied.client("team-a") as client:
        name = client.post(COLLECTION, json=body).json()["name"]
        reply = client.post(f"/v1beta1/{name}:cancel", content=b"")
        assert reply.status_code == 200 and reply.json() == {}
        done = wait_terminal(client, f"/v1/{name}")
        assert done["state"] == "JOB_STATE_CANCELLED"
    with proxied.sessions() as session:
        row = session.scalars(select(Job).where(Job.name == name)).one()
        assert row.cancel_requested_at is not None
        assert row.state == "JOB_STATE_CANCELLED"
