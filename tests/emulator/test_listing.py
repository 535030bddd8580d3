"""The emulator's list paging, in-process: a page costs its jobs, not the location's; the request log is bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy.emulator.faults import Faults
from proxy.emulator.jobs import Job
from proxy.emulator.listing import select_page
from proxy.emulator.oauth import ServiceAccount
from proxy.emulator.state import MAX_LOGGED_REQUESTS, EmulatorState

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
