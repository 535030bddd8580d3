"""The Google SDKs pointed at the proxy, with the proxy key as their bearer token: all five calls, in the ledger."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import aiplatform_v1
from google.genai import errors, types
from sqlalchemy import select

from proxy.ledger.models import Job
from tests.providers.vertex.conftest import ALIAS, LOCATION, REAL_PROJECT, Proxied

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def _upload(proxied: Proxied, n: int = 2) -> str:
    bucket = proxied.bucket("sdk-bucket")
    name = f"in-{uuid.uuid4().hex[:8]}/input.jsonl"
    lines = [{"request": {"contents": [{"role": "user", "parts": [{"text": f"Say {i}"}]}]}} for i in range(n)]
    bucket.blob(name).upload_from_string("".join(json.dumps(x) + "\n" for x in lines))
    return f"gs://sdk-bucket/{name}"


def _genai(proxied: Proxied, who: str, version: str | None) -> genai.Client:
    options = types.HttpOptions(base_url=proxied.proxy.url, **({"api_version": version} if version else {}))
    return genai.Client(vertexai=True, project=ALIAS, location=LOCATION, http_options=options,
                        credentials=google.oauth2.credentials.Credentials(token=proxied.keys[who]))


def _ledger_row(proxied: Proxied, name: str) -> Job:
    with proxied.sessions() as session:
        return session.scalars(select(Job).where(Job.name == name)).one()


@pytest.mark.parametrize("version", [None, "v1"], ids=["v1beta1-default", "v1"])
def test_genai_through_the_proxy(proxied: Proxied, version: str | None) -> None:
    client = _genai(proxied, "team-a", version)
    marker = f"genai-{uuid.uuid4().hex[:8]}"
    job = client.batches.create(model="gemini-2.5-flash", src=_upload(proxied),
                                config=types.CreateBatchJobConfig(display_name=marker))
    assert job.name and job.state == types.JobState.JOB_STATE_PENDING
    row = _ledger_row(proxied, job.name)
    assert (row.team, row.project, row.api_version, row.model_id) == (
        "team-a", REAL_PROJECT, version or "v1beta1", "gemini-2.5-flash")

    deadline = time.monotonic() + 20
    while not (job := client.batches.get(name=job.name)).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.name
    listed = list(client.batches.list(config=types.ListBatchJobsConfig(filter=f'display_name="{marker}"')))
    assert [j.name for j in listed] == [job.name]
    assert _ledger_row(proxied, job.name).state == "JOB_STATE_SUCCEEDED"

    # Another team cannot see it, by get or by list.
    other = _genai(proxied, "team-b", version)
    with pytest.raises(errors.ClientError) as hidden:
        other.batches.get(name=job.name)
    assert hidden.value.code == 404
    assert list(other.batches.list(config=types.ListBatchJobsConfig(filter=f'display_name="{marker}"'))) == []

    second = client.batches.create(model="gemini-2.5-flash", src=_upload(proxied))
    assert second.name
    client.batches.cancel(name=second.name)
    assert _ledger_row(proxied, second.name).cancel_requested_at is not None

    assert client.batches.delete(name=job.name).done is True
    assert _ledger_row(proxied, job.name).deleted_at is not None


def test_aiplatform_rest_client_through_the_proxy(proxied: Proxied) -> None:
    credentials: Any = google.oauth2.credentials.Credentials(token=proxied.keys["team-a"])
    client = aiplatform_v1.JobServiceClient(transport="rest", credentials=credentials,
                                            client_options=ClientOptions(api_endpoint=proxied.proxy.url))
    parent = f"projects/{ALIAS}/locations/{LOCATION}"
    batch = f"aip-{uuid.uuid4().hex[:8]}"
    job_type = aiplatform_v1.BatchPredictionJob

    def new_job(i: int) -> aiplatform_v1.BatchPredictionJob:
        return job_type(
            display_name=f"{batch}-{i}", model=f"{parent}/publishers/google/models/gemini-2.5-flash-lite",
            labels={"batch": batch},
            input_config=job_type.InputConfig(instances_format="jsonl",
                                              gcs_source=aiplatform_v1.GcsSource(uris=[_upload(proxied)])),
            output_config=job_type.OutputConfig(
                predictions_format="jsonl",
                gcs_destination=aiplatform_v1.GcsDestination(output_uri_prefix=f"gs://sdk-bucket/{batch}/")))

    created = [client.create_batch_prediction_job(parent=parent, batch_prediction_job=new_job(i)) for i in range(3)]
    assert all(j.state == aiplatform_v1.JobState.JOB_STATE_PENDING for j in created)
    for job in created:
        row = _ledger_row(proxied, job.name)
        assert row.team == "team-a" and row.state == "JOB_STATE_PENDING"

    pager = client.list_batch_prediction_jobs(request=aiplatform_v1.ListBatchPredictionJobsRequest(
        parent=parent, filter=f'labels.batch="{batch}"', page_size=1))
    pages = list(pager.pages)
    assert len(pages) == 3
    assert sorted(j.name for page in pages for j in page.batch_prediction_jobs) == sorted(j.name for j in created)

    deadline = time.monotonic() + 20
    while client.get_batch_prediction_job(name=created[1].name).state != aiplatform_v1.JobState.JOB_STATE_SUCCEEDED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The REST client asked for enums as numbers; the ledger still read the state.
    assert _ledger_row(proxied, created[1].name).state == "JOB_STATE_SUCCEEDED"

    with pytest.raises(exceptions.BadRequest):  # it ended already
        client.cancel_batch_prediction_job(name=created[1].name)
    client.delete_batch_prediction_job(name=created[1].name).result(timeout=10)
    assert _ledger_row(proxied, created[1].name).deleted_at is not None
    with pytest.raises(exceptions.NotFound):
        client.get_batch_prediction_job(name=created[1].name)
