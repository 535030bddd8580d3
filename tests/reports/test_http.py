"""`GET /v1/costs`, the dashboard's sign-in and session cookie, and `/metrics`, over HTTP against the running proxy."""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from proxy.clock import utcnow
from proxy.ledger.models import ApiKey, Job
from proxy.money import format_usd
from proxy.settings import default
from proxy.tenancy.keys import create_key, revoke_key, rotate_key
from tests.reports.conftest import UNPRICED_MODEL, Ledger, expected_report
from tests.reports.test_cli_and_formats import from_csv

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

ALL = {"since": "2025-01-01", "until": "2028-01-01"}


def get_costs(ledger: Ledger, who: str | None, **params: str | list[str]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ledger.env.keys[who]}"} if who else {}
    return httpx.get(f"{ledger.env.proxy.url}/v1/costs", params=params, headers=headers, timeout=30)


def test_costs_answers_the_report_document(ledger: Ledger) -> None:
    reply = get_costs(ledger, "admin", by="team,model,month")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert reply.json() == expected_report(ledger.jobs, ("team", "model", "month"))
    assert get_costs(ledger, "admin").json() == expected_report(ledger.jobs, ("team", "model"))  # the default


def test_costs_as_csv_parses_back_to_the_same_numbers(ledger: Ledger) -> None:
    reply = get_costs(ledger, "admin", by="week,key", format="csv", **ALL)
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert from_csv(reply.text, ("week", "key")) == expected_report(ledger.jobs, ("week", "key"))["rows"]


def test_costs_count_the_jobs_in_flight_as_the_report_does(ledger: Ledger) -> None:
    for fmt in ("json", "csv"):
        assert get_costs(ledger, "admin", by="team", format=fmt).headers["x-vbp-in-flight-jobs"] == "1"
    assert get_costs(ledger, "admin", by="team").json()["in_flight_jobs"] == 1  # the job still running
    assert get_costs(ledger, "team-a", by="team").json()["in_flight_jobs"] == 1  # it is team-a's
    assert get_costs(ledger, "team-b", by="team").json()["in_flight_jobs"] == 0
    assert get_costs(ledger, "admin", since="2026-11-05").json()["in_flight_jobs"] == 0  # made 2026-11-04
    csv_reply = get_costs(ledger, "team-b", by="team", format="csv")
    assert csv_reply.headers["x-vbp-in-flight-jobs"] == "0"


def test_a_report_answer_is_reused_for_its_seconds_then_refreshed(ledger: Ledger) -> None:
    """VBP_REPORT_CACHE_SECONDS (the default, 10): a job moved into a range shows only once the answer is stale."""
    seconds = default("report_cache_seconds")
    params = {"by": "job", "since": "2031-03-01", "until": "2031-04-01"}  # a range no other test asks for
    job = next(j for j in ledger.jobs if j.cost_status == "priced")
    sent = time.monotonic()
    assert get_costs(ledger, "admin", **params).json()["rows"] == []
    answered = time.monotonic()  # the answer's queries started between `sent` and now
    with ledger.sessions.begin() as session:
        session.execute(update(Job).where(Job.name == job.name).values(create_time=datetime(2031, 3, 10, tzinfo=UTC)))
    try:
        replies = []
        while True:
            asked = time.monotonic()
            rows = get_costs(ledger, "admin", **params).json()["rows"]
            replies.append((asked, time.monotonic(), [row["job"] for row in rows]))
            if asked > answered + seconds:
                break
            time.sleep(0.5)
        assert all(jobs == [] for _, received, jobs in replies if received < sent + seconds), replies
        assert replies[-1][2] == [job.name]  # asked once the first answer was stale: computed anew
    finally:
        with ledger.sessions.begin() as session:
            session.execute(update(Job).where(Job.name == job.name).values(create_time=job.created))


def test_the_page_says_why_a_job_has_no_figure_or_a_zero_one(ledger: Ledger) -> None:
    [failed] = [job for job in ledger.jobs if job.state == "JOB_STATE_FAILED" and job.cost_status == "priced"]
    with sign_in(ledger, ledger.env.keys["admin"]) as client:
        page = client.get("/dashboard", params=ALL).text
    no_output = page.split('<table id="no-output-jobs">', 1)[1].split("</table>", 1)[0]
    assert failed.name in no_output and no_output.count("<tr>") == 2  # the header and that one job
    assert re.search(r'<span class="why">ended FAILED with no output file under gs://metering/[^<]*: nothing is '
                     r"billed</span>", no_output)
    unmeterable = page.split('<table id="unpriced-jobs">', 1)[1].split("</table>", 1)[0]
    assert "BigQuery outputs cannot be metered yet; this job has no cost figure" in unmeterable
    in_flight = page.split('<table id="in-flight-jobs">', 1)[1].split("</table>", 1)[0]
    assert ledger.in_flight in in_flight
    assert re.search(r"<td>running</td><td><span class=\"why\">(PENDING|RUNNING): not ended yet</span></td>"
                     r"<td>next check at [^<]+</td>", in_flight), in_flight


def test_a_team_key_sees_only_its_team(ledger: Ledger) -> None:
    for who, team in (("team-a-2", "team-a"), ("team-b", "team-b")):
        reply = get_costs(ledger, who, by="team,model")
        assert reply.json() == expected_report(ledger.jobs, ("team", "model"), lambda j, t=team: j.team == t)
        assert {row["team"] for row in reply.json()["rows"]} == {team}
        assert get_costs(ledger, who, team=team, by="job").json() == expected_report(
            ledger.jobs, ("job",), lambda j, t=team: j.team == t)
    denied = get_costs(ledger, "team-b", team="team-a")
    assert denied.status_code == 403
    assert denied.json() == {"error": {"code": 403, "message": "This key sees only the costs of team 'team-b'.",
                                       "status": "PERMISSION_DENIED"}}
    # an admin picks any team, or several
    assert get_costs(ledger, "admin", team=["team-a", "team-b"], by="team").json() == expected_report(
        ledger.jobs, ("team",))
    assert get_costs(ledger, "admin", team="team-b", model=UNPRICED_MODEL).json()["rows"] == []


@pytest.mark.parametrize(("who", "params", "status", "google_status"), [
    (None, {}, 401, "UNAUTHENTICATED"),
    ("admin", {"by": "team,colour"}, 400, "INVALID_ARGUMENT"),
    ("admin", {"since": "last week"}, 400, "INVALID_ARGUMENT"),
    ("admin", {"format": "xml"}, 400, "INVALID_ARGUMENT"),
])
def test_costs_errors_use_the_google_envelope(ledger: Ledger, who: str | None, params: dict[str, str], status: int,
                                              google_status: str) -> None:
    reply = get_costs(ledger, who, **params)
    assert reply.status_code == status
    assert reply.json()["error"]["status"] == google_status and reply.json()["error"]["code"] == status


@contextlib.contextmanager
def sign_in(ledger: Ledger, secret: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ledger.env.proxy.url, timeout=30) as client:
        reply = client.post("/dashboard/login", data={"key": secret})
        assert reply.status_code == 303 and reply.headers["location"] == "/dashboard"
        yield client


def test_sign_in_sets_a_signed_http_only_same_site_cookie_without_the_key(ledger: Ledger) -> None:
    secret = ledger.env.keys["team-b"]
    with httpx.Client(base_url=ledger.env.proxy.url, timeout=30) as client:
        form = client.get("/dashboard")
        assert form.status_code == 200 and 'action="/dashboard/login"' in form.text
        assert "<script" not in form.text
        reply = client.post("/dashboard/login", data={"key": secret})
        assert reply.status_code == 303
        cookie = reply.headers["set-cookie"]
        assert cookie.startswith("vbp_session=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
        value = cookie.split(";")[0].removeprefix("vbp_session=")
        payload = base64.urlsafe_b64decode(value.split(".")[0] + "==")
        assert secret not in value and secret.encode() not in payload and b"vbp_" not in payload
        page = client.get("/dashboard", params=ALL)
        assert page.status_code == 200 and 'id="signed-in-team">team-b<' in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # a tampered cookie is no session
        client.cookies.set("vbp_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
                           domain="127.0.0.1", path="/dashboard")
        assert 'action="/dashboard/login"' in client.get("/dashboard").text


def test_a_wrong_key_is_refused_and_sets_nothing(ledger: Ledger) -> None:
    with httpx.Client(base_url=ledger.env.proxy.url, timeout=30) as client:
        reply = client.post("/dashboard/login", data={"key": "vbp_not-a-key"})
        assert reply.status_code == 401 and "set-cookie" not in reply.headers
        assert 'id="login-error"' in reply.text


def test_the_page_shows_a_team_only_its_own_figures(ledger: Ledger) -> None:
    with sign_in(ledger, ledger.env.keys["team-a"]) as client:
        page = client.get("/dashboard", params=ALL).text
    want = expected_report(ledger.jobs, ("team", "model"), lambda j: j.team == "team-a")
    assert re.search(r'id="total-cost">([^<]*)<', page).group(1) == want["totals"]["cost_usd"]  # type: ignore[union-attr]
    assert 'data-team="team-a"' in page and 'data-team="team-b"' not in page and "team-b" not in page
    assert 'id="total-unpriced">1<' in page and 'id="total-unmeterable">1<' in page
    assert 'id="total-in-flight">1<' in page and ledger.in_flight in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="spend-chart"' in page


def test_the_csv_export_of_a_session(ledger: Ledger) -> None:
    with sign_in(ledger, ledger.env.keys["team-b"]) as client:
        reply = client.get("/dashboard/costs.csv", params={"by": "team,model", **ALL})
        assert reply.status_code == 200
        assert from_csv(reply.text, ("team", "model")) == expected_report(
            ledger.jobs, ("team", "model"), lambda j: j.team == "team-b")["rows"]
        assert client.get("/dashboard/costs.csv", params={"team": "team-a"}).status_code == 403
    anonymous = httpx.get(f"{ledger.env.proxy.url}/dashboard/costs.csv", timeout=30)
    assert anonymous.status_code == 303 and not anonymous.text.count(",")


def test_sign_out_revocation_and_rotation_end_sessions(ledger: Ledger) -> None:
    with ledger.sessions.begin() as session:
        key, secret = create_key(session, team="team-b", name="short-lived")
        other, other_secret = create_key(session, team="team-b", name="rotated")
    with sign_in(ledger, secret) as client:
        assert 'id="signed-in-team"' in client.get("/dashboard").text
        out = client.post("/dashboard/logout")
        assert out.status_code == 303 and 'vbp_session=""' in out.headers["set-cookie"]
    with sign_in(ledger, secret) as client:
        with ledger.sessions.begin() as session:
            revoke_key(session, key_id=key.id)
        assert 'action="/dashboard/login"' in client.get("/dashboard").text
    with sign_in(ledger, other_secret) as client:
        with ledger.sessions.begin() as session:
            rotate_key(session, key_id=other.id, grace_seconds=3600)
        assert 'id="signed-in-team"' in client.get("/dashboard").text  # the old secret is still in its grace
        with ledger.sessions.begin() as session:
            row = session.get(ApiKey, other.id)
            assert row is not None
            row.previous_valid_until = utcnow() - timedelta(seconds=1)
        assert 'action="/dashboard/login"' in client.get("/dashboard").text


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_metrics_show_requests_jobs_costs_tokens_and_the_poller(ledger: Ledger) -> None:
    get_costs(ledger, "admin")
    text = httpx.get(f"{ledger.env.proxy.url}/metrics", timeout=30).text
    assert _metric(text, "vbp_requests_total", route="costs", status="200") >= 1
    assert _metric(text, "vbp_requests_total", route="create", status="200") >= len(ledger.jobs)
    assert _metric(text, "vbp_upstream_seconds_count", method="POST", outcome="200") >= len(ledger.jobs)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vbp_jobs{")) == len(ledger.jobs) + 1  # and the one in flight
    assert _metric(text, "vbp_jobs", state="JOB_STATE_FAILED") == 2
    assert _metric(text, "vbp_jobs", state="JOB_STATE_SUCCEEDED") == 6
    for row in expected_report(ledger.jobs, ("team", "model"))["rows"]:
        labels = {"team": row["team"], "model": row["model"]}
        assert format_usd(round(_metric(text, "vbp_metered_cost_usd", **labels) * 10**12)) == row["cost_usd"]
        for kind, value in row["tokens"].items():
            assert _metric(text, "vbp_metered_tokens", kind=kind, **labels) == value
        assert _metric(text, "vbp_unpriced_jobs", **labels) == row["unpriced_jobs"]
    assert _metric(text, "vbp_metered_jobs", team="team-a", model=UNPRICED_MODEL, cost_status="unpriced") == 1
    assert _metric(text, "vbp_ledger_up") == 1
    assert _metric(text, "vbp_poller_lag_seconds") < 60
    assert _metric(text, "vbp_metering_seconds_count", result="metered") == 5  # the SUCCEEDED priced jobs
    assert _metric(text, "vbp_metering_seconds_count", result="settled") == 1  # FAILED with no output
    assert _metric(text, "vbp_metering_seconds_count", result="unmeterable") == 1
    assert _metric(text, "vbp_poller_last_pass_timestamp_seconds") > 0
