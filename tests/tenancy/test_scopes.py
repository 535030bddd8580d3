"""Scopes, field by field: a call outside the key's projects, locations, models or operations is 403
PERMISSION_DENIED in Google's envelope, and Vertex never hears of it. A key scoped to a project works with every
name of that project: its alias, its id and the number Vertex puts in job names.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from proxy.cli import cli
from proxy.ledger.models import ApiKey
from tests.tenancy.conftest import (
    ALIAS,
    COLLECTION,
    LOCATION,
    MISSING_ID,
    REAL_PROJECT,
    Tenancy,
    envelope,
    job_body,
    unique,
)

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

METHODS = {"create": "POST", "list": "GET", "get": "GET", "cancel": "POST", "delete": "DELETE"}


def call(tenancy: Tenancy, secret: str, operation: str, *, project: str = ALIAS, location: str = LOCATION,
         job_id: str = MISSING_ID, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], int]:
    """(status, reply body, emulator calls made) of one call with the given key."""
    base = f"/v1/projects/{project}/locations/{location}/batchPredictionJobs"
    path = {"create": base, "list": base, "get": f"{base}/{job_id}", "cancel": f"{base}/{job_id}:cancel",
            "delete": f"{base}/{job_id}"}[operation]
    before = len(tenancy.emulator_calls())
    reply = tenancy.client_for(secret).request(
        METHODS[operation], path, json=(body or job_body(unique("scoped"))) if operation == "create" else None)
    return reply.status_code, reply.json(), len(tenancy.emulator_calls()) - before


def assert_denied(result: tuple[int, dict[str, Any], int], words: str) -> None:
    status, body, calls = result
    assert status == 403, body
    assert body["error"]["status"] == "PERMISSION_DENIED" and body["error"]["code"] == 403
    assert words in body["error"]["message"]
    assert calls == 0


@pytest.fixture(scope="module")
def own_job(tenancy: Tenancy) -> dict[str, Any]:
    """A running job of team `scoped`, whose keys the tests below make."""
    _, secret = tenancy.new_key("scoped")
    status, job, _ = call(tenancy, secret, "create")
    assert status == 200
    return job


# --- operations --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("allowed", ["create", "read", "cancel", "delete"])
@pytest.mark.parametrize("operation", ["create", "list", "get", "cancel", "delete"])
def test_operations_scope(tenancy: Tenancy, allowed: str, operation: str) -> None:
    _, secret = tenancy.new_key("scoped", operations=[allowed])
    needed = {"list": "read", "get": "read"}.get(operation, operation)
    result = call(tenancy, secret, operation)
    if needed != allowed:
        assert_denied(result, f"may not {operation}")
    else:  # in scope: the call goes on (a missing job is then the usual 404, a create the usual 200)
        assert result[0] == (200 if operation in ("create", "list") else 404)
        assert result[2] == (1 if operation in ("create", "list") else 0)


# --- projects ----------------------------------------------------------------------------------------------

def test_project_scope_by_alias_id_or_number(tenancy: Tenancy, own_job: dict[str, Any]) -> None:
    number, job_id = own_job["name"].split("/")[1], own_job["name"].rsplit("/", 1)[-1]
    assert number.isdigit()
    for scope in (ALIAS, REAL_PROJECT, number):
        _, secret = tenancy.new_key("scoped", projects=[scope])
        for project in (ALIAS, REAL_PROJECT, number):
            status, body, calls = call(tenancy, secret, "get", project=project, job_id=job_id)
            assert (status, calls) == (200, 1), (scope, project, body)
            assert body["name"] == own_job["name"]
        assert call(tenancy, secret, "list", project=number)[0] == 200
    _, elsewhere = tenancy.new_key("scoped", projects=["other-project"])
    for project in (ALIAS, REAL_PROJECT, number):
        assert_denied(call(tenancy, elsewhere, "get", project=project, job_id=job_id), "may not use project")
    assert_denied(call(tenancy, elsewhere, "create"), "may not use project")
    assert_denied(call(tenancy, elsewhere, "list"), "may not use project")


def test_project_scope_says_nothing_about_whose_job_it_is(tenancy: Tenancy, own_job: dict[str, Any]) -> None:
    """Through the project number too, another team's job and a missing one get the same 404, no Vertex call."""
    number = own_job["name"].split("/")[1]
    _, secret = tenancy.new_key("nosy", projects=[ALIAS])
    theirs = own_job["name"].rsplit("/", 1)[-1]
    replies = []
    for job_id in (theirs, MISSING_ID):
        status, body, calls = call(tenancy, secret, "get", project=number, job_id=job_id)
        replies.append((status, json.dumps(body).replace(job_id, "ID"), calls))
    assert replies[0] == replies[1] and replies[0][0] == 404 and replies[0][2] == 0


# --- locations ---------------------------------------------------------------------------------------------

def test_location_scope(tenancy: Tenancy) -> None:
    _, secret = tenancy.new_key("scoped", locations=[LOCATION])
    assert call(tenancy, secret, "list")[0] == 200
    for operation in ("create", "list", "get", "cancel", "delete"):
        assert_denied(call(tenancy, secret, operation, location="europe-west4"), "may not use location")


# --- models ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("patterns", "model", "allowed"), [
    (["gemini-2.5-*"], "publishers/google/models/gemini-2.5-flash", True),
    (["gemini-2.5-*"], "publishers/google/models/gemini-2.5-pro", True),
    (["gemini-2.5-*"], "publishers/google/models/gemini-2.0-flash", False),
    (["gemini-2.0-flash"], "publishers/google/models/gemini-2.0-flash", True),
    (["gemini-2.0-flash"], "publishers/google/models/gemini-2.0-flash-001", False),
    (["gemini-2.0-flash", "text-*"], f"projects/{ALIAS}/locations/{LOCATION}/publishers/google/models/"
                                     "gemini-2.0-flash", True),
    (["gemini-2.5-*"], None, False),
])
def test_model_scope(tenancy: Tenancy, patterns: list[str], model: str | None, allowed: bool) -> None:
    _, secret = tenancy.new_key("scoped", models=patterns)
    body = job_body(unique("model"))
    if model is None:
        del body["model"]
    else:
        body["model"] = model
    result = call(tenancy, secret, "create", body=body)
    if allowed:
        assert result[0] == 200 and result[2] == 1, result
    else:
        assert_denied(result, "model")


def test_a_model_path_cannot_leave_the_keys_projects_or_locations(tenancy: Tenancy) -> None:
    _, secret = tenancy.new_key("scoped", projects=[ALIAS], locations=[LOCATION])
    for model, words in (
        (f"projects/other-project/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash",
         "models of project"),
        (f"projects/{ALIAS}/locations/europe-west4/publishers/google/models/gemini-2.5-flash", "models of location"),
    ):
        assert_denied(call(tenancy, secret, "create", body=job_body(unique("m"), model=model)), words)


# --- admin -------------------------------------------------------------------------------------------------

def test_scopes_bind_admin_keys_too(tenancy: Tenancy, own_job: dict[str, Any]) -> None:
    _, secret = tenancy.new_key("platform", admin=True, operations=["read"], locations=[LOCATION])
    job_id = own_job["name"].rsplit("/", 1)[-1]
    status, body, calls = call(tenancy, secret, "get", job_id=job_id)
    assert (status, calls) == (200, 1) and body["name"] == own_job["name"]  # another team's job: admin sees it
    assert_denied(call(tenancy, secret, "cancel", job_id=job_id), "may not cancel")
    assert_denied(call(tenancy, secret, "list", location="europe-west4"), "may not use location")


def test_a_refusal_is_in_googles_envelope(tenancy: Tenancy) -> None:
    _, secret = tenancy.new_key("scoped", operations=["read"])
    reply = tenancy.client_for(secret).post(COLLECTION, json=job_body("x"))
    assert reply.status_code == 403 and reply.headers["content-type"].startswith("application/json")
    assert envelope(reply) == {"code": 403, "status": "PERMISSION_DENIED",
                               "message": "This key may not create batch prediction jobs."}


# --- keys create takes every scope ---------------------------------------------------------------------------

def test_vbp_keys_create_takes_every_scope(tenancy: Tenancy) -> None:
    runner = CliRunner()
    env = {"VBP_DATABASE_URL": tenancy.database_url}
    result = runner.invoke(cli, ["keys", "create", "--team", "cli-team", "--name", "ci", "--project", ALIAS,
                                 "--project", REAL_PROJECT, "--location", LOCATION, "--model", "gemini-2.5-*",
                                 "--ops", "create,read", "--admin", "--expires-in", "30d", "--json"], env=env)
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    with tenancy.sessions() as session:
        key = session.get(ApiKey, made["id"])
        assert key is not None
        assert (key.team, key.name, key.projects, key.locations, key.models, key.operations, key.admin) == (
            "cli-team", "ci", [ALIAS, REAL_PROJECT], [LOCATION], ["gemini-2.5-*"], ["create", "read"], True)
        assert key.expires_at is not None and 29.9 < (key.expires_at - key.created_at).total_seconds() / 86400 < 30.1
    # ... and the key works within them
    status, _, _ = call(tenancy, made["key"], "list")
    assert status == 200
    assert_denied(call(tenancy, made["key"], "cancel"), "may not cancel")


@pytest.mark.parametrize(("args", "words"), [
    (["--team", "Team A"], "team 'Team A'"),
    (["--team", "t", "--ops", "create,write"], "unknown operations: write"),
    (["--team", "t", "--location", "us-central1.evil.com"], "invalid location"),
    (["--team", "t", "--project", "x/y"], "invalid project"),
    (["--team", "t", "--model", "publishers/google/models/x"], "invalid model pattern"),
    (["--team", "t", "--expires-in", "soon"], "not a duration"),
])
def test_vbp_keys_create_refuses_bad_scopes(tenancy: Tenancy, args: list[str], words: str) -> None:
    with tenancy.sessions() as session:
        before = len(session.scalars(select(ApiKey.id)).all())
    result = CliRunner().invoke(cli, ["keys", "create", *args], env={"VBP_DATABASE_URL": tenancy.database_url})
    assert result.exit_code == 2 and words in result.output, result.output
    with tenancy.sessions() as session:
        assert len(session.scalars(select(ApiKey.id)).all()) == before
