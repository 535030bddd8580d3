"""The real Google SDKs against the emulator: google-genai (v1 and v1beta1) and google-cloud-aiplatform (REST)."""

from __future__ import annotations

import re
import time
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import aiplatform_v1, storage
from google.genai import errors, types

from proxy.emulator.stack import EmulatorStack
from tests.emulator.support import LOCATION, PROJECT, PlainCredentials, output_rows, unique, upload_lines

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def tokens(text: str) -> int:
    """The documented text rule, written out independently of proxy.emulator.usage_rule."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def genai_client(stack: EmulatorStack, version: str, credentials: Any = None) -> genai.Client:
    return genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                        credentials=credentials or stack.credentials(),
                        http_options=types.HttpOptions(base_url=stack.base_url, api_version=version))


def aiplatform_client(stack: EmulatorStack, credentials: Any = None) -> aiplatform_v1.JobServiceClient:
    credentials = credentials or PlainCredentials(source=stack.credentials())
    return aiplatform_v1.JobServiceClient(transport="rest", credentials=credentials,
                                          client_options=ClientOptions(api_endpoint=stack.base_url))


def _lines(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"q{i}",
             "request": {"contents": [{"role": "user", "parts": [{"text": f"Question number {i}?"}]}],
                         "generationConfig": {"maxOutputTokens": 5 + i}}} for i in range(n)]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_genai_runs_the_whole_life_of_a_job(stack: EmulatorStack, bucket: storage.Bucket, version: str) -> None:
    client = genai_client(stack, version)
    lines = _lines(3)
    source = upload_lines(bucket, lines, name=f"{unique('genai')}/input.jsonl")
    marker = unique("genai")
    job = client.batches.create(model="gemini-2.0-flash-001", src=source,
                                config=types.CreateBatchJobConfig(display_name=marker))
    assert job.name and re.fullmatch(r"projects/\d{12}/locations/us-central1/batchPredictionJobs/\d{19}", job.name)
    assert job.state == types.JobState.JOB_STATE_PENDING
    deadline = time.monotonic() + 20
    while not (job := client.batches.get(name=job.name)).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.completion_stats is not None and job.completion_stats.successful_count == 3
    assert job.dest is not None and job.dest.gcs_uri == source.removesuffix(".jsonl") + "/dest"

    listed = list(client.batches.list(config=types.ListBatchJobsConfig(filter=f'display_name="{marker}"')))
    assert [j.name for j in listed] == [job.name]

    assert job.output_info is not None and job.output_info.gcs_output_directory
    rows = output_rows(bucket, job.output_info.gcs_output_directory)
    by_id = {row["custom_id"]: row["response"]["usageMetadata"] for row in rows}
    for i, line in enumerate(lines):
        prompt = tokens(line["request"]["contents"][0]["parts"][0]["text"])
        assert prompt == 4  # "Question", "number", i, "?"
        candidates = min(20 + prompt // 10, 5 + i)  # 2.0-flash does not think
        assert by_id[f"q{i}"] == {
            "candidatesTokenCount": candidates,
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": candidates}],
            "promptTokenCount": prompt,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "totalTokenCount": prompt + candidates,
            "trafficType": "ON_DEMAND",
        }

    deleted = client.batches.delete(name=job.name)
    assert deleted.done is True
    with pytest.raises(errors.ClientError) as missing:
        client.batches.get(name=job.name)
    assert missing.value.code == 404


def test_genai_cancel(stack: EmulatorStack, bucket: storage.Bucket) -> None:
    client = genai_client(stack, "v1beta1")
    job = client.batches.create(model="gemini-2.5-flash", src=upload_lines(bucket, _lines(2)))
    assert job.name
    client.batches.cancel(name=job.name)
    deadline = time.monotonic() + 20
    while not (job := client.batches.get(name=job.name)).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    assert job.error is not None and job.error.code == 1


def test_genai_errors_become_client_errors(stack: EmulatorStack, bucket: storage.Bucket) -> None:
    client = genai_client(stack, "v1")
    with pytest.raises(errors.ClientError) as unknown_model:
        client.batches.create(model="gemini-does-not-exist", src=upload_lines(bucket, _lines(1)))
    assert unknown_model.value.code == 404
    assert unknown_model.value.status == "NOT_FOUND"
    assert unknown_model.value.message == "The PublisherModel gemini-does-not-exist does not exist."

    with pytest.raises(errors.ClientError) as bad_source:
        client.batches.create(model="gemini-2.5-flash", src="gs://")
    assert bad_source.value.code == 400 and bad_source.value.status == "INVALID_ARGUMENT"

    wrong_token = genai_client(stack, "v1", google.oauth2.credentials.Credentials(token="not-issued-here"))
    with pytest.raises(errors.ClientError) as unauthenticated:
        list(wrong_token.batches.list())
    assert unauthenticated.value.code == 401 and unauthenticated.value.status == "UNAUTHENTICATED"


def _aiplatform_job(bucket: storage.Bucket, *, display_name: str, labels: dict[str, str],
                    model: str = "publishers/google/models/gemini-2.5-flash-lite") -> aiplatform_v1.BatchPredictionJob:
    job = aiplatform_v1.BatchPredictionJob
    return job(
        display_name=display_name, model=model, labels=labels,
        input_config=job.InputConfig(instances_format="jsonl",
                                     gcs_source=aiplatform_v1.GcsSource(uris=[upload_lines(bucket, _lines(2))])),
        output_config=job.OutputConfig(predictions_format="jsonl", gcs_destination=aiplatform_v1.GcsDestination(
            output_uri_prefix=f"gs://{bucket.name}/{unique('aip')}/")),
    )


def test_aiplatform_rest_client(stack: EmulatorStack, bucket: storage.Bucket) -> None:
    client = aiplatform_client(stack)
    batch = unique("aip")
    created = [client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=_aiplatform_job(
        bucket, display_name=f"{batch}-{i}", labels={"batch": batch})) for i in range(3)]
    assert all(job.state == aiplatform_v1.JobState.JOB_STATE_PENDING for job in created)
    assert created[0].model.endswith("/publishers/google/models/gemini-2.5-flash-lite")

    pager = client.list_batch_prediction_jobs(request=aiplatform_v1.ListBatchPredictionJobsRequest(
        parent=PARENT, filter=f'labels.batch="{batch}"', page_size=1))
    pages = list(pager.pages)
    assert len(pages) == 3
    assert [job.name for page in pages for job in page.batch_prediction_jobs] == [j.name for j in reversed(created)]

    client.cancel_batch_prediction_job(name=created[0].name)
    deadline = time.monotonic() + 20
    while (got := client.get_batch_prediction_job(name=created[1].name)).state not in (
            aiplatform_v1.JobState.JOB_STATE_SUCCEEDED, aiplatform_v1.JobState.JOB_STATE_FAILED):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert got.state == aiplatform_v1.JobState.JOB_STATE_SUCCEEDED
    assert got.completion_stats.successful_count == 2
    assert got.output_info.gcs_output_directory.startswith(f"gs://{bucket.name}/aip-")
    assert client.get_batch_prediction_job(name=created[0].name).state in (
        aiplatform_v1.JobState.JOB_STATE_CANCELLING, aiplatform_v1.JobState.JOB_STATE_CANCELLED)

    client.delete_batch_prediction_job(name=created[1].name).result(timeout=10)
    with pytest.raises(exceptions.NotFound):
        client.get_batch_prediction_job(name=created[1].name)
    # Every call of the REST transport asked for enums as numbers; the client still read them.
    log = [entry for entry in stack.request_log if batch in entry["body"] or created[1].name in entry["path"]]
    assert log and all("$alt=json;enum-encoding=int" in entry["query"] for entry in log)


def test_aiplatform_errors_become_api_core_exceptions(stack: EmulatorStack, bucket: storage.Bucket) -> None:
    client = aiplatform_client(stack)
    with pytest.raises(exceptions.NotFound):
        client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=_aiplatform_job(
            bucket, display_name="x", labels={}, model="publishers/google/models/gemini-nope"))
    with pytest.raises(exceptions.BadRequest):
        client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=_aiplatform_job(
            bucket, display_name="", labels={}))
    with pytest.raises(exceptions.NotFound):
        client.get_batch_prediction_job(name=f"{PARENT}/batchPredictionJobs/1234567890123456789")
    stranger = aiplatform_client(stack, PlainCredentials(token="not-issued-here"))
    with pytest.raises(exceptions.Unauthorized):
        stranger.get_batch_prediction_job(name=f"{PARENT}/batchPredictionJobs/1234567890123456789")
