"""Isolation, cell by cell: two teams and an admin x (create, get, list, cancel, delete) x (own job, the other
team's job, a missing job), each asserting the exact status and whether the call reached Vertex.

For create, "the other team's job" is a create that labels itself as the other team's, and "missing" is a create
naming a model that does not exist (Vertex's own 404, passed through). For list, the target is picked by a filter
on its unique display name.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from proxy.ledger.models import Job
from proxy.providers.vertex.create_body import label_value
from tests.tenancy.conftest import COLLECTION, MISSING_ID, Tenancy, envelope, job_body, unique

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

CALLERS = ("team-a", "team-b", "admin")
OTHER = {"team-a": "team-b", "team-b": "team-a", "admin": "team-a"}
OPERATIONS = ("create", "get", "list", "cancel", "delete")
TARGETS = ("own", "other", "missing")


def expected(caller: str, operation: str, target: str) -> tuple[int, bool]:
    """(HTTP status, reached the emulator) for one cell: the table of the isolation rules."""
    admin = caller == "admin"
    if operation == "create":
        return {"own": (200, True), "other": (400, False), "missing": (404, True)}[target]
    if operation == "list":
        return 200, True
    if target == "own":
        return 200, True
    if target == "other":
        return (200, True) if admin else (404, False)
    return (404, True) if admin else (404, False)


CELLS = [(c, o, t) for c in CALLERS for o in OPERATIONS for t in TARGETS]


def test_the_table_has_every_cell() -> None:
    assert len(CELLS) == 45
    assert sum(1 for c in CELLS if expected(*c) == (404, False)) == 12  # 2 teams x 3 ops x (other, missing)


@pytest.mark.parametrize(("caller", "operation", "target"), CELLS, ids=["-".join(c) for c in CELLS])
def test_cell(tenancy: Tenancy, caller: str, operation: str, target: str) -> None:
    status, reaches_vertex = expected(caller, operation, target)
    owner = caller if target == "own" else OTHER[caller]
    job: dict[str, Any] | None = None
    if operation in ("get", "list", "cancel", "delete") and target != "missing":
        job = tenancy.create(owner, unique(f"{owner}-{operation}"))
        if operation == "delete":
            tenancy.end(job["name"])
    job_id = job["name"].rsplit("/", 1)[-1] if job else MISSING_ID

    before = len(tenancy.emulator_calls())
    client = tenancy.client(caller)
    if operation == "create":
        labels = {"vbp-team": OTHER[caller]} if target == "other" else {}
        model = "publishers/google/models/gemini-does-not-exist" if target == "missing" else None
        body = job_body(unique(caller), **({"labels": labels} if labels else {}),
                        **({"model": model} if model else {}))
        reply = client.post(COLLECTION, json=body)
    elif operation == "list":
        wanted = job["displayName"] if job else unique("nothing-has-this-name")
        reply = client.get(COLLECTION, params={"filter": f'display_name="{wanted}"'})
    elif operation == "get":
        reply = client.get(f"{COLLECTION}/{job_id}")
    elif operation == "cancel":
        reply = client.post(f"{COLLECTION}/{job_id}:cancel")
    else:
        reply = client.delete(f"{COLLECTION}/{job_id}")
    calls = tenancy.emulator_calls()[before:]

    assert reply.status_code == status, reply.text
    assert len(calls) == (1 if reaches_vertex else 0), calls
    if calls:
        verb = {"create": "POST", "get": "GET", "list": "GET", "cancel": "POST", "delete": "DELETE"}[operation]
        assert calls[0]["method"] == verb and calls[0]["path"].startswith("/v1/projects/my-real-project/")
    if operation == "list":
        clause = f'(labels.vbp-team="{caller}")'
        assert (clause in calls[0]["query"]) == (caller != "admin"), calls[0]["query"]
    if status != 200:
        envelope(reply)

    if operation == "create" and status == 200:
        team = "platform" if caller == "admin" else caller
        assert reply.json()["labels"] == {"vbp-team": team, "vbp-key": tenancy.key_ids[caller]}
    if operation == "list":
        listed = [j["name"] for j in reply.json().get("batchPredictionJobs", [])]
        visible = job is not None and (caller == "admin" or target == "own")
        assert listed == ([job["name"]] if visible and job else [])
    if operation == "get" and status == 200:
        assert job is not None and reply.json()["name"] == job["name"]
    if operation in ("cancel", "delete") and job is not None:
        with tenancy.sessions() as session:
            row = session.scalars(select(Job).where(Job.name == job["name"])).one()
        touched = row.cancel_requested_at if operation == "cancel" else row.deleted_at
        assert (touched is not None) == (status == 200)
        if status == 404:  # refused: the other team's job is as it was at Vertex
            still = tenancy.emulator_job(job["name"])
            assert still.state.terminal == (operation == "delete")
            assert not still.cancel_requested.is_set() or operation == "delete"


@pytest.mark.parametrize("operation", ["get", "cancel", "delete"])
def test_another_teams_job_answers_exactly_like_a_missing_one(tenancy: Tenancy, operation: str) -> None:
    theirs = tenancy.create("team-b")
    their_id = theirs["name"].rsplit("/", 1)[-1]
    replies = []
    before = len(tenancy.emulator_calls())
    client = tenancy.client("team-a")
    for job_id in (their_id, MISSING_ID):
        path = f"{COLLECTION}/{job_id}"
        reply = (client.get(path) if operation == "get" else client.post(path + ":cancel")
                 if operation == "cancel" else client.delete(path))
        replies.append((reply.status_code, reply.headers["content-type"],
                        reply.text.replace(job_id, "ID")))
    assert replies[0] == replies[1]
    assert replies[0][0] == 404 and '"NOT_FOUND"' in replies[0][2]
    assert tenancy.emulator_calls()[before:] == []


@pytest.mark.parametrize("label", ["vbp-team", "vbp-key", "vbp-anything", "VBP-team", "Vbp-Key"])
def test_a_label_with_the_reserved_prefix_is_refused_before_vertex(tenancy: Tenancy, label: str) -> None:
    before = len(tenancy.emulator_calls())
    reply = tenancy.client("team-a").post(COLLECTION, json=job_body(unique("x"), labels={label: "team-a"}))
    assert reply.status_code == 400 and "reserved" in envelope(reply)["message"]
    assert len(tenancy.emulator_calls()) == before


def test_the_stamped_labels_sit_beside_the_callers_own(tenancy: Tenancy) -> None:
    job = tenancy.create("team-b", labels={"env": "prod", "cost-centre": "42"})
    assert job["labels"] == {"env": "prod", "cost-centre": "42", "vbp-team": "team-b",
                             "vbp-key": tenancy.key_ids["team-b"]}


@pytest.mark.parametrize(("text", "label"), [
    ("team-a", "team-a"), ("Team A", "team-a"), ("ops/ml.batch", "ops-ml-batch"), ("x" * 80, "x" * 63),
    ("équipe", "-quipe"),
])
def test_label_values_are_sanitised_to_vertexs_charset(text: str, label: str) -> None:
    assert label_value(text) == label
