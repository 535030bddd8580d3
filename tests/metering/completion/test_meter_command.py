"""`vbp meter` and `vbp reprice` as an operator runs them: malformed rows, a cancelled job, unpriced then priced,
a table correction, and a metering process killed in the middle of a file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from proxy.clock import utcnow
from proxy.ledger.models import Job
from proxy.money import format_usd
from proxy.providers.vertex.states import TERMINAL_STATES, parse_state
from tests.metering.completion.conftest import JOBS, history, submit, submit_to_missing_bucket, text_line
from tests.providers.vertex.conftest import Proxied, running
from tests.support.expected import expected_for, output_rows
from tests.support.throttle import ThrottledRelay

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """Emulator + proxy with NO poller: metering happens only when a test runs `vbp meter`."""
    with running(tmp_path_factory.mktemp("meter-cli"), extra_models=("gemini-9.9-custom",)) as env:
        yield env


def vbp(env: Proxied, *args: str, extra_env: dict[str, str] | None = None,
        background: bool = False) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    environ = {**os.environ, **env.stack.env, "VBP_DATABASE_URL": env.proxy.app.settings.database_url,
               **(extra_env or {})}
    command = [sys.executable, "-m", "proxy", *args]
    if background:  # in a process group of its own, so that the test can end it with all its workers
        return subprocess.Popen(command, env=environ, text=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    done = subprocess.run(command, env=environ, text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def meter_lines(env: Proxied, *args: str) -> dict[str, str]:
    """`vbp meter ARGS`: each job it names -> its line without the name (`settled      (why)`)."""
    out = vbp(env, "meter", *args)
    assert isinstance(out, subprocess.CompletedProcess)
    lines = {}
    for line in str(out.stdout).splitlines():
        label, name, rest = line.split(maxsplit=2) if line.count(" ") >= 2 else (line, "", "")
        lines[name] = f"{label} {rest}"
    return lines


def wait_ended(env: Proxied, name: str, timeout: float = 30) -> str:
    """Follow the job as a client would (GET through the proxy) until it ends; the ledger marks it due."""
    deadline = time.monotonic() + timeout
    with env.client() as client:
        while True:
            state = client.get(f"/v1/{name}").json()["state"]
            if parse_state(state) in TERMINAL_STATES:
                return str(state)
            assert time.monotonic() < deadline
            time.sleep(0.1)


def job_row(env: Proxied, name: str) -> Job:
    with env.sessions() as session:
        return session.scalars(select(Job).where(Job.name == name)).one()


def test_malformed_lines_are_counted_and_reported_never_priced(quiet: Proxied) -> None:
    name = submit(quiet, "gemini-2.5-flash", [text_line(f"Question {i}?") for i in range(3)])
    wait_ended(quiet, name)
    directory = str(job_row(quiet, name).output_directory)
    good_rows = output_rows(quiet.stack.storage_client(), directory)
    bucket_name, _, prefix = directory.removeprefix("gs://").partition("/")
    blob = quiet.stack.storage_client().bucket(bucket_name).blob(f"{prefix}/predictions.jsonl")
    blob.upload_from_string(blob.download_as_bytes() + b'{"status": "", "response": {"usageMetadata": {"prompt\n'
                            b"not json at all\n[1, 2]\n")

    out = vbp(quiet, "meter", "--job", name)
    assert f"metered      {name}" in str(out.stdout)
    job = job_row(quiet, name)
    want = expected_for(good_rows, "gemini-2.5-flash")
    assert (job.lines_succeeded, job.lines_failed, job.lines_malformed) == (3, 0, 3)
    assert job.cost_pico == want.cost_pico and job.prompt_tokens == want.prompt
    [record] = history(quiet, job)
    assert len(record.malformed_examples) == 3


def test_a_cancelled_job_is_billed_for_the_lines_it_completed(quiet: Proxied) -> None:
    quiet.stack.state.job_seconds = 4.0
    try:
        name = submit(quiet, "gemini-2.5-flash-lite", [text_line(f"Row {i} of many") for i in range(60)])
    finally:
        quiet.stack.state.job_seconds = 0.6
    with quiet.client() as client:
        deadline = time.monotonic() + 10
        while client.get(f"/v1/{name}").json()["state"] != "JOB_STATE_RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)
        assert client.post(f"/v1/{name}:cancel").status_code == 200
    assert wait_ended(quiet, name) == "JOB_STATE_CANCELLED"
    vbp(quiet, "meter", "--job", name)
    job = job_row(quiet, name)
    rows = output_rows(quiet.stack.storage_client(), str(job.output_directory))
    assert 0 < len(rows) < 60
    want = expected_for(rows, "gemini-2.5-flash-lite")
    assert job.lines_succeeded == len(rows) and job.cost_pico == want.cost_pico


def test_unpriced_until_the_table_has_the_model_then_repriced_once(quiet: Proxied, tmp_path: Path) -> None:
    name = submit(quiet, "gemini-9.9-custom", [text_line("Hello there"), text_line("General Kenobi!")])
    wait_ended(quiet, name)
    vbp(quiet, "meter", "--job", name)
    job = job_row(quiet, name)
    assert (job.cost_status, job.cost_pico, job.lines_succeeded) == ("unpriced", None, 2)

    table = tmp_path / "pricing"
    shutil.copytree(REPO / "pricing", table)
    flash = (table / "gemini-2.5-flash.toml").read_text()
    (table / "gemini-9.9-custom.toml").write_text(flash.replace('model = "gemini-2.5-flash"',
                                                               'model = "gemini-9.9-custom"'))
    out = vbp(quiet, "reprice", extra_env={"VBP_PRICING_DIR": str(table)})
    assert "1 job(s) to re-price" in str(out.stdout)
    job = job_row(quiet, name)
    rows = output_rows(quiet.stack.storage_client(), str(job.output_directory))
    want = expected_for(rows, "gemini-2.5-flash")  # the new table prices it as flash
    assert (job.cost_status, job.cost_pico) == ("priced", want.cost_pico)
    first, second = history(quiet, job)
    assert (first.cost_status, first.cost_pico, first.superseded_at is not None) == ("unpriced", None, True)
    assert (second.reason, second.cost_pico, second.superseded_at) == ("reprice", want.cost_pico, None)
    # Nothing left to do: a second run changes nothing.
    assert "0 job(s) to re-price" in str(vbp(quiet, "reprice", extra_env={"VBP_PRICING_DIR": str(table)}).stdout)
    assert len(history(quiet, job)) == 2


def test_a_table_correction_reprices_with_history(quiet: Proxied, tmp_path: Path) -> None:
    name = submit(quiet, "gemini-2.0-flash", [text_line("Price me twice")])
    wait_ended(quiet, name)
    vbp(quiet, "meter", "--job", name)
    before = job_row(quiet, name)
    rows = output_rows(quiet.stack.storage_client(), str(before.output_directory))
    assert before.cost_pico == expected_for(rows, "gemini-2.0-flash").cost_pico

    table = tmp_path / "pricing"
    shutil.copytree(REPO / "pricing", table)
    path = table / "gemini-2.0-flash.toml"
    text = path.read_text()
    assert 'batch = { input = "0.075"' in text
    path.write_text(text.replace('batch = { input = "0.075"', 'batch = { input = "0.08"'))
    vbp(quiet, "reprice", "--all", extra_env={"VBP_PRICING_DIR": str(table)})
    after = job_row(quiet, name)
    usage = rows[0]["response"]["usageMetadata"]
    assert after.cost_pico - before.cost_pico == usage["promptTokenCount"] * (80_000 - 75_000)  # pUSD per token
    first, second = history(quiet, after)
    assert first.cost_pico == before.cost_pico and first.superseded_at is not None
    assert second.cost_pico == after.cost_pico and second.pricing_version != first.pricing_version


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "by-range-in-workers"])
def test_killed_mid_file_then_restarted_counts_once(quiet: Proxied, workers: int) -> None:
    rows, row_bytes = 20_000, 1_000
    name = submit(quiet, "gemini-2.5-flash", [text_line("ignored")],
                  faults={"large_output": {"rows": rows, "row_bytes": row_bytes}})
    wait_ended(quiet, name, timeout=60)
    gcs_port = int(quiet.stack.env["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1])
    relay = ThrottledRelay(gcs_port, bytes_per_second=2_000_000)
    lease = {"VBP_METERING_LEASE_SECONDS": "15",  # renewed every 5 s while the reader lives
             # with 2 workers, the ~20 MB output is read as 8 ranges of ~2.5 MB by worker processes
             "VBP_METER_PROCESSES": str(workers), "VBP_METER_RANGE_MB": "1"}
    try:
        meter = vbp(quiet, "meter", "--job", name, background=True,
                    extra_env={**lease, "STORAGE_EMULATOR_HOST": relay.url})
        assert isinstance(meter, subprocess.Popen)
        deadline = time.monotonic() + 30
        while relay.relayed < 4_000_000:  # well into the ~20 MB file
            assert meter.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert job_row(quiet, name).metering_state == "claimed"
        os.killpg(meter.pid, signal.SIGKILL)  # the process and its metering workers
        meter.wait(timeout=10)
    finally:
        relay.close()

    # While the dead process's lease lasts, nobody else meters the job.
    skipped = vbp(quiet, "meter", "--job", name, extra_env=lease)
    claimed = job_row(quiet, name)
    assert claimed.metering_state == "claimed" and claimed.claim_until is not None
    assert str(skipped.stdout) == (f"claimed      {name}  (a process is metering it now; its claim lasts until "
                                   f"{claimed.claim_until:%Y-%m-%d %H:%M:%S} UTC)\n")
    time.sleep(max(0.0, (claimed.claim_until - utcnow()).total_seconds()) + 0.2)
    vbp(quiet, "meter", "--job", name, extra_env=lease)
    job = job_row(quiet, name)
    assert job.metering_state == "metered" and job.metering_attempts == 2
    all_rows = output_rows(quiet.stack.storage_client(), str(job.output_directory))
    want = expected_for(all_rows, "gemini-2.5-flash")
    assert job.lines_succeeded == rows == want.succeeded
    assert (job.prompt_tokens, job.candidates_tokens, job.cost_pico) == (want.prompt, want.candidates, want.cost_pico)
    assert len(history(quiet, job)) == 1


def test_meter_job_settles_a_job_failed_by_a_missing_bucket_and_says_why(quiet: Proxied) -> None:
    name, bucket = submit_to_missing_bucket(quiet)
    assert wait_ended(quiet, name) == "JOB_STATE_FAILED"
    reason = (f"ended FAILED; the output bucket gs://{bucket} does not exist, so the job wrote nothing: nothing is "
              "billed")
    assert meter_lines(quiet, "--job", name) == {name: f"settled ({reason}; 0 lines, cost 0.00 USD)"}
    job = job_row(quiet, name)
    assert (job.metering_state, job.cost_status, job.cost_pico, job.lines_succeeded) == ("metered", "priced", 0, 0)
    # asked again, it says what it found before
    assert meter_lines(quiet, "--job", name) == {
        name: f"priced (metered at {job.metered_at:%Y-%m-%d %H:%M:%S} UTC: 0 lines (0 succeeded, 0 failed, 0 "
              f"malformed); tokens: none; cost 0.00 USD; {reason})"}
    # and the report explains the zero
    since = job.create_time.isoformat()
    until = (job.create_time + timedelta(microseconds=1)).isoformat()
    report = vbp(quiet, "report", "--by", "job", "--since", since, "--until", until)
    lines = str(report.stdout).splitlines()
    assert "1 job(s) ended with no output to meter: counted with 0 lines and 0.00 USD." in lines
    assert f"  {name}: {reason}" in lines


def _empty_folder(env: Proxied, directory: str) -> dict[str, bytes]:
    bucket_name, _, prefix = directory.removeprefix("gs://").partition("/")
    bucket = env.stack.storage_client().bucket(bucket_name)
    saved = {}
    for blob in bucket.list_blobs(prefix=prefix + "/"):
        saved[blob.name] = blob.download_as_bytes()
        blob.delete()
    return saved


def test_a_succeeded_job_whose_output_is_not_visible_waits_and_says_until_when(quiet: Proxied) -> None:
    name = submit(quiet, "gemini-2.5-flash", [text_line("Where did my output go?"), text_line("And this one?")])
    assert wait_ended(quiet, name) == "JOB_STATE_SUCCEEDED"
    directory = str(job_row(quiet, name).output_directory)
    saved = _empty_folder(quiet, directory)  # as if Vertex had not written its files yet
    reason = f"ended SUCCEEDED with 2 completed line(s), but no output file under {directory} is visible yet"
    for attempt, backoff in ((1, 60), (2, 120)):  # each `vbp meter --job` tries now, whatever the retry time
        line = meter_lines(quiet, "--job", name)[name]
        job = job_row(quiet, name)
        assert (job.metering_state, job.metering_attempts, job.metering_error) == ("due", attempt, reason)
        assert job.next_poll_at is not None and job.metered_at is None
        assert abs((job.next_poll_at - utcnow()).total_seconds() - backoff) < 30
        assert line == f"waiting ({reason}; next try at {job.next_poll_at:%Y-%m-%d %H:%M:%S} UTC)"
    # the report lists it among the jobs in flight, with the same reason and time
    since = job.create_time.isoformat()
    until = (job.create_time + timedelta(microseconds=1)).isoformat()
    lines = str(vbp(quiet, "report", "--since", since, "--until", until).stdout).splitlines()
    assert ("1 job(s) in flight (not metered yet) are not included: 0 running, 1 ended and waiting to be metered."
            in lines)
    assert f"  {name}: {reason}; next try at {job.next_poll_at:%Y-%m-%d %H:%M:%S} UTC" in lines
    # once the files are there, the next `vbp meter --job` meters it and gives the figures
    bucket = quiet.stack.storage_client().bucket(directory.removeprefix("gs://").partition("/")[0])
    for blob_name, content in saved.items():
        bucket.blob(blob_name).upload_from_string(content)
    line = meter_lines(quiet, "--job", name)[name]
    job = job_row(quiet, name)
    want = expected_for(output_rows(quiet.stack.storage_client(), directory), "gemini-2.5-flash")
    assert (job.metering_state, job.cost_pico, job.lines_succeeded) == ("metered", want.cost_pico, 2)
    assert line == (f"metered (2 lines (2 succeeded, 0 failed, 0 malformed); tokens: {job.prompt_tokens:,} prompt, "
                    f"{job.candidates_tokens:,} candidates, {job.thoughts_tokens:,} thoughts; cost "
                    f"{format_usd(want.cost_pico)} USD)")


def test_a_deleted_output_bucket_makes_a_job_with_completed_lines_unmeterable(quiet: Proxied) -> None:
    bucket_name = "doomed-bucket"  # within the test proxies' prefixes; made here and deleted below
    client = quiet.stack.storage_client()
    bucket = client.create_bucket(bucket_name)
    bucket.blob("in.jsonl").upload_from_string(json.dumps(text_line("Soon gone")) + "\n")
    body = {"displayName": "doomed", "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{bucket_name}/in.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://{bucket_name}/out"}}}
    with quiet.client() as http:
        name = str(http.post(JOBS, json=body).json()["name"])
    assert wait_ended(quiet, name) == "JOB_STATE_SUCCEEDED"
    for blob in list(bucket.list_blobs()):
        blob.delete()
    bucket.delete()
    reason = (f"the output bucket gs://{bucket_name} does not exist, so the 1 completed line(s) cannot be read (was it "
              "deleted?); this job has no cost figure")
    assert meter_lines(quiet, "--job", name) == {name: f"unmeterable ({reason})"}
    job = job_row(quiet, name)
    assert (job.metering_state, job.cost_status, job.cost_pico) == ("unmeterable", "unmeterable", None)
    assert [record.note for record in history(quiet, job)] == [reason]


def test_vbp_meter_checks_and_meters_every_unfinished_job_now(quiet: Proxied) -> None:
    later = utcnow() + timedelta(hours=1)
    running = submit(quiet, "gemini-2.5-flash-lite", [text_line("Checked an hour from now?")])
    failed, _ = submit_to_missing_bucket(quiet)
    deadline = time.monotonic() + 30
    while {quiet.stack.state.jobs.get(*(n.split("/")[i] for i in (1, 3, 5))).state.terminal
           for n in (running, failed)} != {True}:  # both ended upstream; the ledger does not know yet
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with quiet.sessions.begin() as session:  # neither is due for a check before an hour
        session.execute(update(Job).where(Job.name.in_([running, failed])).values(next_poll_at=later))
    lines = meter_lines(quiet)
    assert lines[running].startswith("metered (1 lines (1 succeeded, 0 failed, 0 malformed)")
    assert lines[failed].startswith("settled (ended FAILED; the output bucket")
    assert {job_row(quiet, n).metering_state for n in (running, failed)} == {"metered"}
    # nothing left: it says so
    assert str(vbp(quiet, "meter").stdout) == "nothing to meter: every job of the ledger has its figure\n"
