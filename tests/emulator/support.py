"""Small helpers the emulator tests share: upload input lines, build a create body, wait, read outputs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import google.auth.credentials
import google.auth.transport
import httpx
from google.cloud import storage

from proxy.providers.vertex.states import TERMINAL_STATES, parse_state

PROJECT = "test-project"
LOCATION = "us-central1"
COLLECTION = f"/v1/projects/{PROJECT}/locations/{LOCATION}/batchPredictionJobs"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def upload_lines(bucket: storage.Bucket, lines: list[Any], *, name: str | None = None) -> str:
    """Write JSONL (dicts are dumped, strings kept verbatim) and return its gs:// URI."""
    name = name or f"{unique('input')}/input.jsonl"
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    bucket.blob(name).upload_from_string(text)
    return f"gs://{bucket.name}/{name}"


def job_body(input_uri: str, bucket: storage.Bucket, *, model: str = "publishers/google/models/gemini-2.5-flash",
             **extra: Any) -> dict[str, Any]:
    return {
        "displayName": extra.pop("displayName", unique("job")),
        "model": model,
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [input_uri]}},
        "outputConfig": {"predictionsFormat": "jsonl",
                         "gcsDestination": {"outputUriPrefix": f"gs://{bucket.name}/{unique('out')}/"}},
        **extra,
    }


def create(http: httpx.Client, body: dict[str, Any], *, collection: str = COLLECTION) -> dict[str, Any]:
    reply = http.post(collection, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_done(http: httpx.Client, name: str, *, timeout: float = 20.0, version: str = "v1") -> dict[str, Any]:
    """Poll a job until it reaches a terminal state; return its last JSON."""
    deadline = time.monotonic() + timeout
    while True:
        reply = http.get(f"/{version}/{name}")
        assert reply.status_code == 200, reply.text
        job = reply.json()
        state = parse_state(job["state"])
        if state in TERMINAL_STATES:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}"
        time.sleep(0.05)


def output_rows(bucket: storage.Bucket, directory: str, *, include_incremental: bool = False) -> list[dict[str, Any]]:
    """Every row of every final *.jsonl under a job's gcsOutputDirectory."""
    prefix = directory.removeprefix(f"gs://{bucket.name}/") + "/"
    rows: list[dict[str, Any]] = []
    for blob in bucket.client.list_blobs(bucket.name, prefix=prefix):
        if not blob.name.endswith(".jsonl"):
            continue
        if "/incremental_predictions/" in blob.name and not include_incremental:
            continue
        rows.extend(json.loads(line) for line in blob.download_as_text().splitlines() if line)
    return rows


def envelope(reply: httpx.Response, code: int, status: str) -> str:
    """Assert a reply is Google's error envelope with this code and status; return its message."""
    assert reply.status_code == code, reply.text
    error = reply.json()["error"]
    assert error["code"] == code
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    return error["message"]


class PlainCredentials(google.auth.credentials.Credentials):
    """Bearer-token credentials without google-auth's regional-access-boundary lookup.

    google-auth's service-account credentials, used through `before_request` (as the gapic transports do),
    start a background lookup at iamcredentials.googleapis.com; tests must not reach the internet. These
    refresh through `source` (the real service-account flow against the emulator's /token) or always
    present `token`.
    """

    def __init__(self, *, source: google.auth.credentials.Credentials | None = None, token: str | None = None) -> None:
        super().__init__()
        self._source = source
        self._fixed = token

    def refresh(self, request: google.auth.transport.Request) -> None:
        if self._source is None:
            self.token = self._fixed
            return
        self._source.refresh(request)
        self.token, self.expiry = self._source.token, self._source.expiry
