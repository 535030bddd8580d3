"""Jobs run end to end: created through the proxy, finished by the emulator, metered by the proxy."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import select

from proxy.ledger.models import Job, JobMetering
from tests.providers.vertex.conftest import LOCATION, Proxied

JOBS = f"/v1/projects/meter-project/locations/{LOCATION}/batchPredictionJobs"


def text_line(text: str, **request: Any) -> dict[str, Any]:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **request}}


def submit(proxied: Proxied, model: str, lines: list[Any], *, who: str = "team-a",
           faults: dict[str, Any] | None = None) -> str:
    """Upload the lines and create a job on `model` through the proxy; returns the job name."""
    bucket = proxied.bucket("metering")
    folder = f"job-{uuid.uuid4().hex[:10]}"
    bucket.blob(f"{folder}/input.jsonl").upload_from_string(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    body = {"displayName": folder, "model": f"publishers/google/models/{model}",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://metering/{folder}/input.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://metering/{folder}/out"}}}
    if faults:
        proxied.stack.set_faults(**faults)
    try:
        with proxied.client(who) as client:
            reply = client.post(JOBS, json=body)
    finally:
        if faults:
            proxied.stack.set_faults()
    assert reply.status_code == 200, reply.text
    return str(reply.json()["name"])


def submit_to_missing_bucket(proxied: Proxied, who: str = "team-a") -> tuple[str, str]:
    """Create a job whose input and output are in a bucket that does not exist, as the README's quickstart did
    before it uploaded its input: Vertex accepts it and the job FAILS. Returns the job name and the bucket."""
    bucket, folder = "no-such-bucket", uuid.uuid4().hex[:8]  # within the test proxies' prefixes; never created
    body = {"displayName": "missing-bucket", "model": "publishers/google/models/gemini-2.5-flash-lite",
            "inputConfig": {"instancesFormat": "jsonl",
                            "gcsSource": {"uris": [f"gs://{bucket}/{folder}/input.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://{bucket}/{folder}/out"}}}
    with proxied.client(who) as client:
        reply = client.post(JOBS, json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["name"]), bucket


def wait_metered(proxied: Proxied, name: str, timeout: float = 60) -> Job:
    """Wait until the proxy has metered the job (no client polls it: the poller must find it)."""
    deadline = time.monotonic() + timeout
    while True:
        with proxied.sessions() as session:
            job = session.scalars(select(Job).where(Job.name == name)).one()
            if job.metering_state in ("metered", "unmeterable"):
                return job
        assert time.monotonic() < deadline, f"{name} not metered: {job.state} {job.metering_state}"
        time.sleep(0.1)


def history(proxied: Proxied, job: Job) -> list[JobMetering]:
    with proxied.sessions() as session:
        return list(session.scalars(select(JobMetering).where(JobMetering.job_pk == job.id).order_by(JobMetering.id)))
