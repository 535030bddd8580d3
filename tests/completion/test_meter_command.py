"""`vbp meter` and `vbp reprice` as an operator runs them: malformed rows, a cancelled job, unpriced then priced,
a table correction, and a metering process killed in the middle of a file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from proxy.clock import utcnow
from proxy.ledger.models import Job
from proxy.providers.vertex.states import TERMINAL_STATES, parse_state
from tests.completion.conftest import history, submit, text_line
from tests.proxy.conftest import Proxied, running
from tests.support.expected import expected_for, output_rows
from tests.support.throttle import ThrottledRelay

REPO = Path(__file__).resolve().parents[2]


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
    if background:
        return subprocess.Popen(command, env=environ, text=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    done = subprocess.run(command, env=environ, text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


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
        meter.send_signal(signal.SIGKILL)
        meter.wait(timeout=10)
    finally:
        relay.close()

    # While the dead process's lease lasts, nobody else meters the job.
    skipped = vbp(quiet, "meter", "--job", name, extra_env=lease)
    assert "nothing to meter" in str(skipped.stdout)
    claimed = job_row(quiet, name)
    assert claimed.metering_state == "claimed" and claimed.claim_until is not None
    time.sleep(max(0.0, (claimed.claim_until - utcnow()).total_seconds()) + 0.2)
    vbp(quiet, "meter", "--job", name, extra_env=lease)
    job = job_row(quiet, name)
    assert job.metering_state == "metered" and job.metering_attempts == 2
    all_rows = output_rows(quiet.stack.storage_client(), str(job.output_directory))
    want = expected_for(all_rows, "gemini-2.5-flash")
    assert job.lines_succeeded == rows == want.succeeded
    assert (job.prompt_tokens, job.candidates_tokens, job.cost_pico) == (want.prompt, want.candidates, want.cost_pico)
    assert len(history(quiet, job)) == 1
