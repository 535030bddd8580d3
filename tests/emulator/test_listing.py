"""The emulator's list paging, in-process: a page costs its jobs, not the location's; the request log is bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy.emulator.faults import Faults
from proxy.emulator.jobs import Job, JobStore
from proxy.emulator.listing import select_page
from proxy.emulator.oauth import ServiceAccount
from proxy.emulator.state import MAX_LOGGED_REQUESTS, EmulatorState
from proxy.providers.vertex.states import JobState

START = datetime(2026, 11, 30, tzinfo=UTC)


def jobs(count: int) -> list[Job]:
    """`count` jobs a second apart, newest first (as the store lists them)."""
    made = [Job(project_number="123", location="us-central1", job_id=str(10**18 + n), spec={}, model_id="m",
                faults=Faults().for_job(), job_seconds=1, create_time=START + timedelta(seconds=n))
            for n in range(count)]
    return made[::-1]


def test_a_page_tests_only_the_jobs_it_needs() -> None:
    listed = jobs(1000)
    tested: list[Job] = []

    def even(job: Job) -> bool:
        tested.append(job)
        return int(job.job_id) % 2 == 0

    page, token = select_page(listed, token=None, size=3, matches=even)
    assert [job.job_id for job in page] == [str(10**18 + n) for n in (998, 996, 994)]
    assert token is not None
    assert len(tested) == 8  # 999 .. 992: the three of the page, the one that says there is more, the odd between

    tested.clear()
    second, last = select_page(listed, token=token, size=3, matches=even)
    assert [job.job_id for job in second] == [str(10**18 + n) for n in (992, 990, 988)]
    assert last is not None and len(tested) == 8  # 993 .. 986: the jobs before the token are not tested


def test_the_last_page_has_no_token() -> None:
    listed = jobs(4)
    first, token = select_page(listed, token=None, size=2)
    second, none = select_page(listed, token=token, size=2)
    assert [job.job_id for job in first + second] == [job.job_id for job in listed]
    assert none is None


def test_the_request_log_keeps_the_newest_calls_only() -> None:
    account = ServiceAccount.generate(token_uri="http://127.0.0.1:1/token", project_id="log-project")
    state = EmulatorState(account=account, gcs_url="http://127.0.0.1:1")
    for n in range(MAX_LOGGED_REQUESTS + 5):
        state.log_request({"n": n})
    log = state.request_log
    assert len(log) == MAX_LOGGED_REQUESTS == 10_000
    assert log[0] == {"n": 5} and log[-1] == {"n": MAX_LOGGED_REQUESTS + 4}


def test_the_store_lists_a_location_newest_first_without_the_others_and_forgets_deleted_jobs() -> None:
    store = JobStore()
    made = jobs(5)[::-1]  # oldest first
    elsewhere = Job(project_number="123", location="europe-west4", job_id="7", spec={}, model_id="m",
                    faults=Faults().for_job(), job_seconds=1, create_time=START)
    for job in (made[3], made[0], elsewhere, made[4], made[1], made[2]):  # added out of order
        store.add(job)
    assert store.in_location("123", "us-central1") == made[::-1]
    assert store.in_location("123", "europe-west4") == [elsewhere]
    assert store.in_location("456", "us-central1") == []
    store.finish(made[2], JobState.JOB_STATE_SUCCEEDED)
    store.delete("123", "us-central1", made[2].job_id)
    assert store.in_location("123", "us-central1") == [made[4], made[3], made[1], made[0]]


def test_a_jobs_view_is_made_once_and_follows_every_change() -> None:
    store = JobStore()
    [job] = jobs(1)
    store.add(job)
    first = store.snapshot(job)
    assert first["state"] == "JOB_STATE_PENDING" and store.snapshot(job) is not first  # a copy each time
    assert store.start(job, "gs://out/dir")
    assert (store.snapshot(job)["state"], store.snapshot(job)["outputInfo"]) == (
        "JOB_STATE_RUNNING", {"gcsOutputDirectory": "gs://out/dir"})
    store.count(job, successful=3, failed=1)
    assert store.snapshot(job)["completionStats"] == {"successfulCount": "3", "failedCount": "1"}
    store.cancel("123", "us-central1", job.job_id)
    assert store.snapshot(job)["state"] == "JOB_STATE_CANCELLING"
    store.finish(job, JobState.JOB_STATE_CANCELLED, error={"code": 1, "message": "CANCELED"})
    view = store.snapshot(job)
    assert (view["state"], view["error"]) == ("JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELED"})
    assert view == job._json(enum_int=False) and store.snapshot(job, enum_int=True)["state"] == 7
