"""A create body carries only what a batch job needs, read the way Vertex reads it.

Field names are taken in lowerCamelCase or the proto's snake_case, and nothing looser: `labels_` once let a team
stamp another team's label and `model_` slipped past a model scope, because the emulator (like a lenient reader)
folded them into `labels` and `model`. Fields a Gemini batch job does not need are refused unless the team's
policy allows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from proxy.cli import cli
from proxy.providers.vertex.job_fields import RESTRICTED_FIELDS
from tests.support.proxy_server import ProxyServer
from tests.tenancy.conftest import BUCKET, LOCATION, REAL_PROJECT, Tenancy, envelope, job_body, unique

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

VERSIONS = ("v1", "v1beta1")
SNAKE = {"serviceAccount": "service_account", "dedicatedResources": "dedicated_resources",
         "manualBatchTuningParameters": "manual_batch_tuning_parameters", "encryptionSpec": "encryption_spec",
         "unmanagedContainerModel": "unmanaged_container_model", "explanationSpec": "explanation_spec",
         "generateExplanation": "generate_explanation", "modelParameters": "model_parameters",
         "instanceConfig": "instance_config", "modelMonitoringConfig": "model_monitoring_config"}
VALUES: dict[str, Any] = {
    "serviceAccount": "platform-admin@my-real-project.iam.gserviceaccount.com",
    "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-4"}, "startingReplicaCount": 1},
    "manualBatchTuningParameters": {"batchSize": 4},
    "encryptionSpec": {"kmsKeyName": "projects/other/locations/us/keyRings/r/cryptoKeys/k"},
    "unmanagedContainerModel": {"artifactUri": "gs://team-a-private/model/"},
    "explanationSpec": {"parameters": {}}, "generateExplanation": True, "modelParameters": {"temperature": 0.2},
    "instanceConfig": {"instanceType": "object"},
    "modelMonitoringConfig": {"statsAnomaliesBaseDirectory": {"outputUriPrefix": "gs://team-a-private/m/"}},
}


@pytest.fixture(scope="module")
def fresh(tenancy: Tenancy) -> Iterator[ProxyServer]:
    """A replica that reads team policies afresh on every create."""
    proxy = tenancy.replica(team_cache_seconds=0)
    yield proxy
    proxy.stop()


def create(tenancy: Tenancy, proxy: ProxyServer, secret: str, payload: object,
           version: str = "v1") -> tuple[httpx.Response, int]:
    return tenancy.create_counted(secret, payload, proxy=proxy, version=version)


def assert_invalid(reply: httpx.Response, calls: int, words: str) -> None:
    assert reply.status_code == 400, reply.text
    error = envelope(reply)
    assert error["status"] == "INVALID_ARGUMENT"
    assert words in error["message"], error["message"]
    assert calls == 0


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("extra", "words"), [
    ({"labels_": {"vbp-team": "team-a"}}, 'Unknown name "labels_": Cannot find field.'),
    ({"model_": "publishers/google/models/gemini-2.5-pro"}, 'Unknown name "model_": Cannot find field.'),
    ({"Labels": {"owner": "x"}}, 'Unknown name "Labels"'),
    ({"display_Name": "x"}, 'Unknown name "display_Name"'),
    ({"displayname": "x"}, 'Unknown name "displayname"'),
    ({"inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{BUCKET}/input.jsonl"]},
                      "gcs_source_": {"uris": ["gs://team-a-private/secret.jsonl"]}}},
     'Unknown name "gcs_source_" at \'batch_prediction_job.input_config\''),
    ({"outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {
        "outputUriPrefix": f"gs://{BUCKET}/o/", "outputUriPrefix_": "gs://team-a-private/"}}},
     'Unknown name "outputUriPrefix_" at \'batch_prediction_job.output_config.gcs_destination\''),
])
def test_unknown_names_are_refused(tenancy: Tenancy, fresh: ProxyServer, version: str, extra: dict[str, Any],
                                   words: str) -> None:
    reply, calls = create(tenancy, fresh, tenancy.keys["team-b"], job_body(unique("names"), **extra), version)
    assert_invalid(reply, calls, words)


@pytest.mark.parametrize(("extra", "words"), [
    ({"display_name": "second"}, "'batch_prediction_job.display_name' is given twice"),
    ({"output_config": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/o/"}}},
     "'batch_prediction_job.output_config' is given twice"),
    ({"input_config": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://team-a-private/s.jsonl"]}}},
     "'batch_prediction_job.input_config' is given twice"),
])
def test_two_spellings_of_one_field_are_refused(tenancy: Tenancy, fresh: ProxyServer, extra: dict[str, Any],
                                                words: str) -> None:
    payload = {"displayName": unique("twice"), **{k: v for k, v in job_body("x").items() if k != "displayName"}}
    payload.update(extra)
    reply, calls = create(tenancy, fresh, tenancy.keys["team-b"], payload)
    assert_invalid(reply, calls, words)


def test_a_model_scope_cannot_be_bypassed_by_a_second_spelling(tenancy: Tenancy, fresh: ProxyServer) -> None:
    _, secret = tenancy.new_key("team-b", models=["gemini-2.5-flash"])
    payload = job_body(unique("scope"), model_="publishers/google/models/gemini-2.5-pro")
    reply, calls = create(tenancy, fresh, secret, payload)
    assert_invalid(reply, calls, 'Unknown name "model_"')


def test_snake_case_bodies_are_forwarded_in_camel_case(tenancy: Tenancy, fresh: ProxyServer) -> None:
    payload = {"display_name": unique("snake"), "model": "publishers/google/models/gemini-2.5-flash",
               "labels": {"cost_center": "c1"}, "disable_container_logging": True,
               "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [f"gs://{BUCKET}/input.jsonl"]}},
               "output_config": {"predictions_format": "jsonl",
                                 "gcs_destination": {"output_uri_prefix": f"gs://{BUCKET}/snake/"}},
               # output-only fields: ignored by Vertex in a create, so not forwarded
               "state": "JOB_STATE_SUCCEEDED", "name": f"projects/{REAL_PROJECT}/locations/{LOCATION}/"
                                                        "batchPredictionJobs/1", "output_info": None}
    reply, calls = create(tenancy, fresh, tenancy.keys["team-b"], payload)
    assert reply.status_code == 200 and calls == 1, reply.text
    spec = tenancy.emulator_job(reply.json()["name"]).spec
    assert spec == {"displayName": payload["display_name"], "model": "publishers/google/models/gemini-2.5-flash",
                    "labels": {"cost_center": "c1", "vbp-team": "team-b", "vbp-key": tenancy.key_ids["team-b"]},
                    "disableContainerLogging": True,
                    "inputConfig": {"instancesFormat": "jsonl",
                                    "gcsSource": {"uris": [f"gs://{BUCKET}/input.jsonl"]}},
                    "outputConfig": {"predictionsFormat": "jsonl",
                                     "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/snake/"}}}


def test_the_restricted_list_is_the_documented_one() -> None:
    assert set(RESTRICTED_FIELDS) == set(SNAKE)


@pytest.mark.parametrize("field", sorted(SNAKE))
@pytest.mark.parametrize("spelling", ["camel", "snake"])
def test_fields_a_batch_job_does_not_need_are_refused(tenancy: Tenancy, fresh: ProxyServer, field: str,
                                                      spelling: str) -> None:
    name = field if spelling == "camel" else SNAKE[field]
    reply, calls = create(tenancy, fresh, tenancy.keys["team-b"], job_body(unique("restricted"),
                                                                           **{name: VALUES[field]}))
    assert_invalid(reply, calls, f"BatchPredictionJob.{SNAKE[field]} is not allowed through this proxy")
    assert f"--allow-field {field}" in reply.json()["error"]["message"]


def test_a_team_policy_allows_a_restricted_field(tenancy: Tenancy, fresh: ProxyServer) -> None:
    team = unique("allowed")
    _, secret = tenancy.new_key(team)
    payload = job_body(unique("allowed"), service_account=VALUES["serviceAccount"],
                       generateExplanation=False)
    assert create(tenancy, fresh, secret, payload)[0].status_code == 400
    result = CliRunner().invoke(cli, ["teams", "set", team, "--allow-field", "service_account",
                                      "--allow-field", "generateExplanation", "--json"],
                                env={"VBP_DATABASE_URL": tenancy.database_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["allowed_fields"] == ["serviceAccount", "generateExplanation"]
    reply, calls = create(tenancy, fresh, secret, payload)
    assert reply.status_code == 200 and calls == 1, reply.text
    spec = tenancy.emulator_job(reply.json()["name"]).spec
    assert spec["serviceAccount"] == VALUES["serviceAccount"] and spec["generateExplanation"] is False
    # Only the fields allowed: another restricted one is still refused for this team.
    reply, calls = create(tenancy, fresh, secret, job_body(unique("allowed"), encryptionSpec=VALUES["encryptionSpec"]))
    assert_invalid(reply, calls, "BatchPredictionJob.encryption_spec is not allowed")
    # And another team is not allowed it at all.
    reply, calls = create(tenancy, fresh, tenancy.keys["team-b"], payload)
    assert_invalid(reply, calls, "BatchPredictionJob.service_account is not allowed")


def test_allow_field_takes_only_restricted_names(tenancy: Tenancy) -> None:
    result = CliRunner().invoke(cli, ["teams", "set", "some-team", "--allow-field", "labels"],
                                env={"VBP_DATABASE_URL": tenancy.database_url})
    assert result.exit_code == 2
    assert "'labels' is not a field a team can be allowed" in result.output
