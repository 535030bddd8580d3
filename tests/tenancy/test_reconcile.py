"""Reconciliation: a job Vertex created but the ledger never recorded (here: the database refuses the insert) is
adopted with its owner from the labels, by `vbp reconcile` and by the periodic pass inside `vbp serve`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from proxy.cli import cli
from proxy.ledger.models import Job
from proxy.tenancy.project_names import MISS_SECONDS
from tests.tenancy.conftest import (
    ALIAS,
    COLLECTION,
    LOCATION,
    REAL_PROJECT,
    Tenancy,
    envelope,
    job_body,
    reconcile,
    unique,
)

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REFUSAL = "the ledger refuses writes (test)"


def create_unrecorded(tenancy: Tenancy, location: str = LOCATION) -> dict[str, Any]:
    """Create through the proxy while SQLite refuses every insert into `jobs` (as a database that went away
    would): Vertex has the job, the ledger does not, and the client is told so, naming the job."""
    display = unique("unrecorded")
    with tenancy.sessions.begin() as session:
        session.execute(text(f"CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN "
                             f"SELECT RAISE(ABORT, '{REFUSAL}'); END"))
    try:
        reply = tenancy.client("team-a").post(
            f"/v1/projects/{ALIAS}/locations/{location}/batchPredictionJobs", json=job_body(display))
    finally:
        with tenancy.sessions.begin() as session:
            session.execute(text("DROP TRIGGER refuse_jobs"))
    assert reply.status_code == 500, reply.text
    error = envelope(reply)
    assert error["status"] == "INTERNAL"
    named = re.search(r"projects/\d+/locations/[a-z0-9-]+/batchPredictionJobs/\d+", error["message"])
    assert named is not None and "Do not create it again" in error["message"], error
    name = named.group()
    job = tenancy.emulator_job(name)  # Vertex has it, with the owner's labels ...
    assert job.spec["displayName"] == display
    assert job.spec["labels"] == {"vbp-team": "team-a", "vbp-key": tenancy.key_ids["team-a"]}
    with tenancy.sessions() as session:  # ... the ledger does not
        assert session.scalars(select(Job).where(Job.name == name)).first() is None
    return {"name": name, "displayName": display}


def test_a_job_the_ledger_missed_is_adopted_by_vbp_reconcile(tenancy: Tenancy) -> None:
    tenancy.create("team-b")  # the ledger knows the pair (a pair it does not know: the periodic test below)
    lost = create_unrecorded(tenancy)
    name, job_id = lost["name"], lost["name"].rsplit("/", 1)[-1]
    assert tenancy.client("team-a").get(f"{COLLECTION}/{job_id}").status_code == 404  # unknown to the ledger

    young = [o for o in reconcile(tenancy, "--min-age", "1h") if o["name"] == name]
    assert young == [{"name": name, "result": "young", "team": "team-a", "key_id": tenancy.key_ids["team-a"]}]
    with tenancy.sessions() as session:
        assert session.scalars(select(Job).where(Job.name == name)).first() is None

    adopted = [o for o in reconcile(tenancy, "--min-age", "0s") if o["name"] == name]
    assert adopted == [{"name": name, "result": "adopted", "team": "team-a", "key_id": tenancy.key_ids["team-a"]}]
    with tenancy.sessions() as session:
        row = session.scalars(select(Job).where(Job.name == name)).one()
        assert (row.team, row.key_id, row.origin, row.project, row.location, row.display_name, row.model_id) == (
            "team-a", tenancy.key_ids["team-a"], "reconcile", REAL_PROJECT, LOCATION, lost["displayName"],
            "gemini-2.5-flash")
        assert row.labels == {"vbp-team": "team-a", "vbp-key": tenancy.key_ids["team-a"]}
        assert row.input_uris == ["gs://tenancy-bucket/input.jsonl"] and row.state == "JOB_STATE_PENDING"
        assert row.events[0].source == "reconcile"

    # Adopted, it is team-a's job like any other, and still nobody else's. This process asked for it before the
    # adoption (another process) and holds that miss for MISS_SECONDS; a process that had not asked sees it at once.
    fresh = tenancy.replica()
    try:
        got = tenancy.client_for(tenancy.keys["team-a"], proxy=fresh).get(f"{COLLECTION}/{job_id}")
        assert got.status_code == 200 and got.json()["name"] == name
    finally:
        fresh.stop()
    deadline = time.monotonic() + MISS_SECONDS + 2
    while (got := tenancy.client("team-a").get(f"{COLLECTION}/{job_id}")).status_code == 404:
        assert time.monotonic() < deadline, "the adopted job stayed missing past MISS_SECONDS"
        time.sleep(0.2)
    assert got.status_code == 200 and got.json()["name"] == name
    before = len(tenancy.emulator_calls())
    assert tenancy.client("team-b").get(f"{COLLECTION}/{job_id}").status_code == 404
    assert len(tenancy.emulator_calls()) == before
    # A second pass adopts nothing more.
    assert [o for o in reconcile(tenancy, "--min-age", "0s") if o["name"] == name] == []


def test_labelled_jobs_this_ledger_cannot_vouch_for_are_left_alone(tenancy: Tenancy) -> None:
    tenancy.create("team-a")  # so that the pair is one the ledger serves
    foreign = tenancy.create_outside(unique("foreign"), {"vbp-team": "team-a", "vbp-key": "key_000000000000"})
    forged = tenancy.create_outside(unique("forged"), {"vbp-team": "team-b", "vbp-key": tenancy.key_ids["team-a"]})
    outcomes = {o["name"]: o["result"] for o in reconcile(tenancy, "--min-age", "0s")}
    assert outcomes[foreign["name"]] == "foreign" and outcomes[forged["name"]] == "mismatch"
    with tenancy.sessions() as session:
        assert session.scalars(select(Job).where(Job.name.in_([foreign["name"], forged["name"]]))).all() == []


def test_the_periodic_pass_in_serve_adopts_in_configured_pairs(tenancy: Tenancy) -> None:
    """europe-west4 has no job in the ledger: only VBP_RECONCILE_PROJECTS tells the pass to look there."""
    replica = tenancy.replica(reconcile_interval=0.3, reconcile_min_age=0.0,
                              reconcile_projects=((ALIAS, "europe-west4"),))
    try:
        with tenancy.sessions() as session:
            assert session.scalars(select(Job).where(Job.location == "europe-west4")).first() is None
        lost = create_unrecorded(tenancy, location="europe-west4")
        deadline = time.monotonic() + 10
        row = None
        while row is None and time.monotonic() < deadline:
            time.sleep(0.1)
            with tenancy.sessions() as session:
                row = session.scalars(select(Job).where(Job.name == lost["name"])).first()
        assert row is not None, "the periodic pass did not adopt the job"
        assert (row.team, row.key_id, row.origin, row.location) == (
            "team-a", tenancy.key_ids["team-a"], "reconcile", "europe-west4")
    finally:
        replica.stop()


def test_vbp_reconcile_lists_the_pairs_it_is_given(tenancy: Tenancy) -> None:
    lost = create_unrecorded(tenancy, location="asia-east1")
    assert [o for o in reconcile(tenancy, "--min-age", "0s") if o["name"] == lost["name"]] == []  # not served
    outcomes = reconcile(tenancy, "--min-age", "0s", "--project", f"{ALIAS}/asia-east1")
    assert [o["result"] for o in outcomes if o["name"] == lost["name"]] == ["adopted"]
    result = CliRunner().invoke(cli, ["reconcile", "--project", "no-location"],
                                env={"VBP_DATABASE_URL": tenancy.database_url})
    assert result.exit_code == 2 and "project/location" in result.output
