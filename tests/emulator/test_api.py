"""The REST surface over plain HTTP: shapes, errors, auth, listing, enum encoding and read masks."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from google.auth import crypt, jwt
from google.cloud import storage

from proxy.emulator.jobs import project_number
from proxy.emulator.oauth import ServiceAccount
from proxy.emulator.stack import EmulatorStack
from tests.emulator.conftest import EXTRA_MODEL
from tests.emulator.support import (
    COLLECTION,
    LOCATION,
    PROJECT,
    create,
    envelope,
    job_body,
    unique,
    upload_lines,
    wait_done,
)

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
LINE = {"request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}}


@pytest.fixture(scope="module")
def input_uri(bucket: storage.Bucket) -> str:
    return upload_lines(bucket, [LINE])


def test_create_answers_the_pending_job(http: httpx.Client, bucket: storage.Bucket, input_uri: str) -> None:
    body = job_body(input_uri, bucket, labels={"team": "search", "cost-center": "x_1"})
    job = create(http, body)
    number = project_number(PROJECT)
    assert re.fullmatch(r"\d{12}", number)
    assert re.fullmatch(rf"projects/{number}/locations/{LOCATION}/batchPredictionJobs/\d{{19}}", job["name"])
    assert job["state"] == "JOB_STATE_PENDING"
    assert job["displayName"] == body["displayName"]
    assert job["model"] == f"projects/{number}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash"
    assert job["modelVersionId"] == "1"
    assert job["labels"] == {"team": "search", "cost-center": "x_1"}
    assert job["inputConfig"] == body["inputConfig"]
    assert job["outputConfig"] == body["outputConfig"]
    assert TIME_RE.fullmatch(job["createTime"]) and job["updateTime"] == job["createTime"]
    for absent in ("completionStats", "startTime", "endTime", "error", "outputInfo"):
        assert absent not in job


def test_the_project_id_and_its_number_find_the_same_job(http: httpx.Client, bucket: storage.Bucket,
                                                          input_uri: str) -> None:
    job = create(http, job_body(input_uri, bucket))
    job_id = job["name"].rsplit("/", 1)[1]
    by_id = http.get(f"{COLLECTION}/{job_id}")
    by_number = http.get(f"/v1/projects/{project_number(PROJECT)}/locations/{LOCATION}/batchPredictionJobs/{job_id}")
    assert by_id.status_code == by_number.status_code == 200
    assert by_id.json()["name"] == by_number.json()["name"] == job["name"]
    other_location = http.get(f"/v1/projects/{PROJECT}/locations/europe-west4/batchPredictionJobs/{job_id}")
    envelope(other_location, 404, "NOT_FOUND")


@pytest.mark.parametrize("model", [
    "publishers/google/models/gemini-2.0-flash-001",
    f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-pro",
    f"publishers/google/models/{EXTRA_MODEL}",
    "publishers/google/models/text-embedding-005",
])
def test_model_forms_and_extra_models_are_accepted(http: httpx.Client, bucket: storage.Bucket, input_uri: str,
                                                   model: str) -> None:
    job = create(http, job_body(input_uri, bucket, model=model))
    assert job["model"].endswith("/publishers/google/models/" + model.rsplit("/", 1)[1])


@pytest.mark.parametrize("model", ["publishers/google/models/gemini-does-not-exist",
                                   "publishers/anthropic/models/gemini-2.5-flash"])
def test_unknown_model_is_404(http: httpx.Client, bucket: storage.Bucket, input_uri: str, model: str) -> None:
    message = envelope(http.post(COLLECTION, json=job_body(input_uri, bucket, model=model)), 404, "NOT_FOUND")
    assert message == f"The PublisherModel {model.rsplit('/', 1)[1]} does not exist."


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize("breakage", [
    "no display name", "no model", "bare model", "no input", "no instances format", "two sources", "no source",
    "no destination", "two destinations", "empty uris", "not gs", "unknown field", "bad label", "upper-case label",
    "array body",
])
def test_bad_bodies_are_400(http: httpx.Client, bucket: storage.Bucket, input_uri: str, breakage: str) -> None:
    body: Any = job_body(input_uri, bucket)
    if breakage == "no display name":
        _without(body, "displayName")
    elif breakage == "no model":
        _without(body, "model")
    elif breakage == "bare model":
        body["model"] = "gemini-2.5-flash"
    elif breakage == "no input":
        _without(body, "inputConfig")
    elif breakage == "no instances format":
        _without(body, "inputConfig", "instancesFormat")
    elif breakage == "two sources":
        body["inputConfig"]["bigquerySource"] = {"inputUri": "bq://p.d.t"}
    elif breakage == "no source":
        _without(body, "inputConfig", "gcsSource")
    elif breakage == "no destination":
        _without(body, "outputConfig", "gcsDestination")
    elif breakage == "two destinations":
        body["outputConfig"]["bigqueryDestination"] = {"outputUri": "bq://p.d"}
    elif breakage == "empty uris":
        body["inputConfig"]["gcsSource"]["uris"] = []
    elif breakage == "not gs":
        body["inputConfig"]["gcsSource"]["uris"] = ["https://example.com/input.jsonl"]
    elif breakage == "unknown field":
        body["displayNmae"] = "typo"
    elif breakage == "bad label":
        body["labels"] = {"team": "a b"}
    elif breakage == "upper-case label":
        body["labels"] = {"Team": "a"}
    elif breakage == "array body":
        body = [body]
    envelope(http.post(COLLECTION, json=body), 400, "INVALID_ARGUMENT")


def test_malformed_json_is_400(http: httpx.Client) -> None:
    reply = http.post(COLLECTION, content=b'{"displayName": ', headers={"Content-Type": "application/json"})
    assert "Invalid JSON payload" in envelope(reply, 400, "INVALID_ARGUMENT")


def test_snake_case_bodies_are_accepted_like_proto_json(http: httpx.Client, bucket: storage.Bucket,
                                                        input_uri: str) -> None:
    body = {"display_name": "snake", "model": "publishers/google/models/gemini-2.5-flash",
            "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [input_uri]}},
            "output_config": {"gcs_destination": {"output_uri_prefix": f"gs://{bucket.name}/snake/"}}}
    job = create(http, body)
    assert job["displayName"] == "snake"
    assert job["outputConfig"] == {"gcsDestination": {"outputUriPrefix": f"gs://{bucket.name}/snake/"}}


def test_auth_failures_are_401(stack: EmulatorStack) -> None:
    stranger = ServiceAccount.generate(token_uri="http://127.0.0.1:1/token", project_id=stack.project_id)
    signer = crypt.RSASigner.from_string(stranger.info()["private_key"], stranger.key_id)
    now = int(time.time())
    forged = jwt.encode(signer, {"iss": stack.state.account.client_email, "sub": stack.state.account.client_email,
                                 "aud": "https://aiplatform.googleapis.com/", "iat": now, "exp": now + 600}).decode()
    short = stack.issue_token(lifetime=0.2)
    time.sleep(0.3)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {short}"}, {"Authorization": f"Bearer {forged}"}):
        reply = httpx.get(stack.base_url + COLLECTION, headers=headers)
        assert "authentication credential" in envelope(reply, 401, "UNAUTHENTICATED")


def test_unknown_jobs_are_404(http: httpx.Client) -> None:
    for reply in (http.get(f"{COLLECTION}/1234567890123456789"),
                  http.post(f"{COLLECTION}/1234567890123456789:cancel"),
                  http.delete(f"{COLLECTION}/1234567890123456789"),
                  http.get(f"{COLLECTION}/not-a-number")):
        envelope(reply, 404, "NOT_FOUND")


def test_unknown_routes_and_verbs(http: httpx.Client) -> None:
    envelope(http.get("/v2/projects/p/locations/us-central1/batchPredictionJobs"), 404, "NOT_FOUND")
    envelope(http.get("/v1/projects/p/locations/us-central1/customJobs"), 404, "NOT_FOUND")
    assert http.put(COLLECTION).status_code == 405


def test_cancel_and_delete_preconditions(http: httpx.Client, bucket: storage.Bucket, input_uri: str) -> None:
    job = create(http, job_body(input_uri, bucket))
    envelope(http.delete(f"/v1/{job['name']}"), 400, "FAILED_PRECONDITION")
    done = wait_done(http, job["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    envelope(http.post(f"/v1/{job['name']}:cancel", json={}), 400, "FAILED_PRECONDITION")
    envelope(http.post(f"/v1/{job['name']}:cancel", content=b"{nope"), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_delete_answers_an_operation_of_the_url_version(http: httpx.Client, bucket: storage.Bucket,
                                                         input_uri: str, version: str) -> None:
    job = create(http, job_body(input_uri, bucket), collection=COLLECTION.replace("/v1/", f"/{version}/"))
    wait_done(http, job["name"], version=version)
    reply = http.delete(f"/{version}/{job['name']}")
    assert reply.status_code == 200
    operation = reply.json()
    number = project_number(PROJECT)
    assert re.fullmatch(rf"projects/{number}/locations/{LOCATION}/operations/\d{{19}}", operation["name"])
    assert operation["metadata"]["@type"] == (
        f"type.googleapis.com/google.cloud.aiplatform.{version}.DeleteOperationMetadata")
    assert TIME_RE.fullmatch(operation["metadata"]["genericMetadata"]["createTime"])
    assert operation["done"] is True
    assert operation["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    envelope(http.get(f"/{version}/{job['name']}"), 404, "NOT_FOUND")


def test_enum_encoding_int_answers_numbers(http: httpx.Client, bucket: storage.Bucket, input_uri: str) -> None:
    created = http.post(COLLECTION + "?$alt=json;enum-encoding=int", json=job_body(input_uri, bucket))
    assert created.json()["state"] == 2
    name = created.json()["name"]
    wait_done(http, name)
    assert http.get(f"/v1/{name}", params={"$alt": "json;enum-encoding=int"}).json()["state"] == 4
    assert http.get(f"/v1/{name}?%24alt=json%3Benum-encoding%3Dint").json()["state"] == 4
    assert http.get(f"/v1/{name}", params={"$alt": "json"}).json()["state"] == "JOB_STATE_SUCCEEDED"
    listed = http.get(COLLECTION + "?$alt=json;enum-encoding=int").json()["batchPredictionJobs"]
    assert listed and all(isinstance(job["state"], int) for job in listed)


def test_list_pages_filters_and_masks(http: httpx.Client, bucket: storage.Bucket, input_uri: str) -> None:
    batch = unique("batch")
    names = [create(http, job_body(input_uri, bucket, displayName=f"{batch}_{i}", labels={"batch": batch}))["name"]
             for i in range(5)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"filter": f'labels.batch="{batch}"', "pageSize": "2", **({"pageToken": token} if token else {})}
        body = http.get(COLLECTION, params=params).json()
        pages += 1
        assert len(body["batchPredictionJobs"]) <= 2
        seen += [job["name"] for job in body["batchPredictionJobs"]]
        token = body.get("nextPageToken")
        if token is None:
            break
    assert pages == 3
    assert seen == list(reversed(names))  # newest first, each once

    wildcard = http.get(COLLECTION, params={"filter": f'display_name:"{batch}_*" AND NOT display_name="{batch}_0"'})
    assert sorted(job["name"] for job in wildcard.json()["batchPredictionJobs"]) == sorted(names[1:])
    none = http.get(COLLECTION, params={"filter": f'labels.batch="{batch}" AND state="JOB_STATE_CANCELLED"'})
    assert none.json() == {"batchPredictionJobs": []}

    masked = http.get(COLLECTION, params={"filter": f'labels.batch="{batch}"', "readMask": "name,display_name,labels"})
    assert [set(job) for job in masked.json()["batchPredictionJobs"]] == [{"name", "displayName", "labels"}] * 5
    nested = http.get(COLLECTION, params={"filter": f'labels.batch="{batch}"', "readMask": "inputConfig.gcsSource"})
    assert nested.json()["batchPredictionJobs"][0] == {"inputConfig": {"gcsSource": {"uris": [input_uri]}}}


@pytest.mark.parametrize("params", [
    {"filter": 'display_name="unbalanced'},
    {"filter": "labels.a=1 labels.b=2"},
    {"filter": "nosuchfield=1"},
    {"pageToken": "garbage!"},
    {"pageSize": "-1"},
    {"pageSize": "many"},
    {"readMask": "name,noSuchField"},
])
def test_bad_list_queries_are_400(http: httpx.Client, params: dict[str, str]) -> None:
    envelope(http.get(COLLECTION, params=params), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(("extra", "message"), [
    ({"labels_": {"vbp-team": "someone-else"}}, 'Unknown name "labels_": Cannot find field.'),
    ({"model_": "publishers/google/models/gemini-2.5-pro"}, 'Unknown name "model_": Cannot find field.'),
    ({"Labels": {"a": "b"}}, 'Unknown name "Labels": Cannot find field.'),
    ({"display__name": "x"}, 'Unknown name "display__name": Cannot find field.'),
    ({"display_name": "second"}, "Duplicate field 'batch_prediction_job.display_name'."),
])
def test_field_names_are_read_as_proto_json(http: httpx.Client, bucket: storage.Bucket, input_uri: str,
                                            extra: dict[str, Any], message: str) -> None:
    """Only a field's camelCase or proto name is a field: looser spellings would let a second value slip past a
    reader that checks the first (a label that names the owner, the model a key is scoped to)."""
    reply = http.post(COLLECTION, json=job_body(input_uri, bucket, **extra))
    assert envelope(reply, 400, "INVALID_ARGUMENT") == f"Invalid JSON payload received. {message}"


def test_nested_field_names_are_checked_too(http: httpx.Client, bucket: storage.Bucket, input_uri: str) -> None:
    body = job_body(input_uri, bucket)
    body["inputConfig"]["gcs_source_"] = {"uris": ["gs://elsewhere/x.jsonl"]}
    assert envelope(http.post(COLLECTION, json=body), 400, "INVALID_ARGUMENT") == (
        "Invalid JSON payload received. Unknown name \"gcs_source_\" at 'batch_prediction_job.input_config': "
        "Cannot find field.")
    body = job_body(input_uri, bucket)
    body["outputConfig"]["gcsDestination"]["output_uri_prefix"] = "gs://elsewhere/"
    assert envelope(http.post(COLLECTION, json=body), 400, "INVALID_ARGUMENT") == (
        "Invalid JSON payload received. Duplicate field "
        "'batch_prediction_job.output_config.gcs_destination.output_uri_prefix'.")
