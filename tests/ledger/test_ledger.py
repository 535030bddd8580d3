"""Recording jobs and the states seen, on SQLite and PostgreSQL: a state never goes backwards."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger import jobs as ledger
from proxy.ledger.models import Job, JobEvent, RequestLog
from proxy.tenancy.keys import Principal, create_key

NAME = "projects/510528649030/locations/us-central1/batchPredictionJobs/3814889423749775360"
REQUEST = {"displayName": "d", "model": "projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-flash",
           "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
           "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
           "labels": {"vbp-team": "a"}}
REPLY = {"name": NAME, "displayName": "d", "state": "JOB_STATE_PENDING", "createTime": "2026-09-02T20:06:30.166279Z",
         "model": "projects/510528649030/locations/us-central1/publishers/google/models/gemini-2.5-flash",
         "labels": {"vbp-team": "a"}}


@pytest.fixture
def job(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        key, _ = create_key(session, team="a")
        row = ledger.record_created(session, reply=REPLY, request=REQUEST, principal=Principal(key.id, "a"),
                                    api_version="v1", project="p1", location="us-central1")
        return row.id


def test_a_created_job_carries_its_owner_and_request(sessions: sessionmaker[Session], job: int) -> None:
    with sessions() as session:
        row = session.get(Job, job)
        assert row is not None
        assert (row.team, row.project, row.project_number, row.job_id) == ("a", "p1", "510528649030",
                                                                           "3814889423749775360")
        assert (row.model_id, row.input_uris, row.output_prefix) == ("gemini-2.5-flash", ["gs://b/in.jsonl"],
                                                                     "gs://b/out")
        assert row.create_time.isoformat() == "2026-09-02T20:06:30.166279+00:00"
        assert row.metering_state is None
        # addressed by project id or by number
        for project in ("p1", "510528649030"):
            found = ledger.find_job(session, job_id="3814889423749775360", location="us-central1", projects=[project])
            assert found is not None and found.id == job
        assert ledger.find_job(session, job_id="3814889423749775360", location="europe-west4",
                               projects=["p1"]) is None


def test_states_advance_never_back_and_numbers_are_read(sessions: sessionmaker[Session], job: int) -> None:
    steps = [({"state": 3, "startTime": "2026-09-02T20:07:00Z"}, True),       # RUNNING as a number
             ({"state": "JOB_STATE_PENDING"}, False),                          # stale: ignored
             ({"state": "JOB_STATE_SUCCEEDED", "completionStats": {"successfulCount": "5", "failedCount": "1"},
               "outputInfo": {"gcsOutputDirectory": "gs://b/out/prediction-model-x"}}, True),
             ({"state": 3}, False)]                                             # terminal is final
    for reply, advanced in steps:
        with sessions.begin() as session:
            row = session.get(Job, job)
            assert row is not None
            assert ledger.record_seen(session, job=row, reply={"name": NAME, **reply}, source="get") is advanced
    with sessions() as session:
        row = session.get(Job, job)
        assert row is not None
        assert row.state == "JOB_STATE_SUCCEEDED" and row.metering_state == "due"
        assert (row.succeeded_count, row.failed_count, row.incomplete_count) == (5, 1, 0)
        assert row.output_directory == "gs://b/out/prediction-model-x"
        events = [(e.state, e.source) for e in session.scalars(
            select(JobEvent).where(JobEvent.job_pk == job).order_by(JobEvent.id))]
    assert events == [("JOB_STATE_PENDING", "create"), ("JOB_STATE_RUNNING", "get"), ("JOB_STATE_SUCCEEDED", "get")]


def test_request_log_rows(sessions: sessionmaker[Session]) -> None:
    row = {"at": utcnow(), "request_id": "r1", "key_id": "key_x", "team": "a", "method": "GET", "route": "get",
           "api_version": "v1", "job_name": NAME, "status": 200, "upstream_status": 200, "latency_ms": 1.5,
           "error": None}
    with sessions.begin() as session:
        ledger.log_requests(session, rows=[row, {**row, "request_id": "r2", "status": 404, "upstream_status": None}])
    with sessions() as session:
        got = [(r.request_id, r.status) for r in session.scalars(select(RequestLog).order_by(RequestLog.id))]
    assert got == [("r1", 200), ("r2", 404)]


def test_an_ended_job_without_its_output_directory_is_fetched_whole_before_metering(
        sessions: sessionmaker[Session], job: int) -> None:
    trimmed = {"name": NAME, "state": "JOB_STATE_FAILED"}  # a list reply with readMask=name,state
    with sessions.begin() as session:
        row = session.get(Job, job)
        assert row is not None
        assert ledger.record_seen(session, job=row, reply=trimmed, source="list") is True
        assert row.metering_state is None and row.next_poll_at is not None  # the poller fetches it next
    with sessions.begin() as session:
        row = session.get(Job, job)
        assert row is not None
        full = {**trimmed, "outputInfo": {"gcsOutputDirectory": "gs://b/out/prediction-model-y"}}
        assert ledger.record_seen(session, job=row, reply=full, source="poller") is False  # no new state
        assert row.metering_state == "due" and row.output_directory == "gs://b/out/prediction-model-y"
