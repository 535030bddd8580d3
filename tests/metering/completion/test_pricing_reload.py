"""A running `vbp serve` picks up a changed pricing folder without a restart: a new model's file prices its next
jobs exactly, an invalid file keeps the table in use, and SIGHUP reloads what a stat cannot see."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port
from proxy.ledger.engine import make_engine, make_sessionmaker
from proxy.ledger.models import Job
from proxy.metering.pricing import PricingTable
from proxy.tenancy.keys import create_key
from tests.support.expected import expected_for, output_rows
from tests.support.processes import wait_until_serving

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
NEW_MODEL = "gemini-9.9-custom"
JOBS = "/v1/projects/reload-project/locations/us-central1/batchPredictionJobs"
LOGGER = "proxy.metering.pricing_reload"


@dataclass
class Served:
    stack: EmulatorStack
    url: str
    key: str
    pricing: Path
    log: Path
    process: subprocess.Popen[bytes]
    sessions: sessionmaker[Session]

    def wait_for_log(self, text: str, timeout: float = 20) -> str:
        """The first log line (from the reload's logger) that contains `text`."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log.read_text().splitlines():
                if f" {LOGGER}: " in line and text in line:
                    return line.split(f" {LOGGER}: ", 1)[1]
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def reload_lines(self) -> list[str]:
        return [line.split(f" {LOGGER}: ", 1)[1] for line in self.log.read_text().splitlines()
                if f" {LOGGER}: " in line]

    def meter_a_job(self, model: str) -> Job:
        """Create a job of two questions through the proxy and wait until the proxy has metered it."""
        folder = f"job-{uuid.uuid4().hex[:8]}"
        bucket = self.stack.storage_client().bucket("reload")
        bucket.blob(f"{folder}/in.jsonl").upload_from_string("".join(
            json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": f"Question {i}?"}]}]}}) + "\n"
            for i in range(2)))
        body = {"displayName": folder, "model": f"publishers/google/models/{model}",
                "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://reload/{folder}/in.jsonl"]}},
                "outputConfig": {"predictionsFormat": "jsonl",
                                 "gcsDestination": {"outputUriPrefix": f"gs://reload/{folder}/out"}}}
        reply = httpx.post(f"{self.url}{JOBS}", json=body, headers={"Authorization": f"Bearer {self.key}"},
                           timeout=30)
        assert reply.status_code == 200, reply.text
        name = reply.json()["name"]
        deadline = time.monotonic() + 30
        while True:
            with self.sessions() as session:
                job = session.scalars(select(Job).where(Job.name == name)).one()
            if job.metering_state == "metered":
                return job
            assert time.monotonic() < deadline, f"{name}: {job.state} {job.metering_state}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("reload")
    pricing = tmp / "pricing"
    shutil.copytree(REPO / "pricing", pricing)
    stack = EmulatorStack(job_seconds=0.6, extra_models=(NEW_MODEL,)).start()
    stack.storage_client().create_bucket("reload")
    url = f"sqlite:///{tmp / 'ledger.db'}"
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VBP_")}
    environ.update(stack.env, VBP_DATABASE_URL=url, VBP_PRICING_DIR=str(pricing), VBP_POLL_INTERVAL="0.2",
                   VBP_TEAM_GCS_PREFIXES="gs://reload/",
                   VBP_RECONCILE_INTERVAL="0", VBP_METER_PROCESSES="1")
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=environ,
                                   stdout=out, stderr=subprocess.STDOUT)
    engine = None
    try:
        wait_until_serving(process, f"http://127.0.0.1:{port}/readyz", explain=log.read_text)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        with sessions.begin() as session:
            key = create_key(session, team="team-a")[1]
        yield Served(stack, f"http://127.0.0.1:{port}", key, pricing, log, process, sessions)
    finally:
        process.terminate()
        process.wait(timeout=15)
        if engine is not None:
            engine.dispose()
        stack.stop()


def _add_new_model(pricing: Path) -> Path:
    """The new model's file: gemini-2.5-flash's rates under another name."""
    path = pricing / f"{NEW_MODEL}.toml"
    flash = (pricing / "gemini-2.5-flash.toml").read_text()
    path.write_text(flash.replace('model = "gemini-2.5-flash"', f'model = "{NEW_MODEL}"'))
    return path


def test_a_price_added_while_serving_prices_the_next_jobs_without_a_restart(served: Served) -> None:
    before = PricingTable.load(served.pricing)
    job = served.meter_a_job(NEW_MODEL)
    assert (job.cost_status, job.cost_pico, job.lines_succeeded) == ("unpriced", None, 2)

    _add_new_model(served.pricing)
    after = PricingTable.load(served.pricing)
    line = served.wait_for_log("reloaded after its files changed")
    assert line == (f"pricing table reloaded after its files changed from {served.pricing}: version "
                    f"{after.version[:12]} with {len(before.models) + 1} models (was {before.version[:12]} with "
                    f"{len(before.models)})")
    job = served.meter_a_job(NEW_MODEL)
    rows = output_rows(served.stack.storage_client(), str(job.output_directory))
    assert (job.cost_status, job.cost_pico) == ("priced", expected_for(rows, "gemini-2.5-flash").cost_pico)
    assert served.process.poll() is None  # the same process all along

    # An invalid file: the error is logged once and the table in use stays.
    broken = served.pricing / "broken.toml"
    broken.write_text("model = [")
    line = served.wait_for_log("NOT reloaded")
    assert line.startswith("pricing table NOT reloaded after its files changed: broken.toml: not valid TOML: ")
    assert line.endswith(f"; still using version {after.version[:12]}")
    job = served.meter_a_job(NEW_MODEL)
    rows = output_rows(served.stack.storage_client(), str(job.output_directory))
    assert (job.cost_status, job.cost_pico) == ("priced", expected_for(rows, "gemini-2.5-flash").cost_pico)
    assert sum("NOT reloaded" in line for line in served.reload_lines()) == 1  # not again at every pass
    broken.unlink()
    served.wait_for_log("reloaded after its files changed: unchanged")


def test_sighup_reloads_a_change_that_the_files_stat_does_not_show(served: Served) -> None:
    path = served.pricing / f"{NEW_MODEL}.toml"
    if not path.exists():
        _add_new_model(path.parent)
        served.wait_for_log("reloaded after its files changed from")
    stat = path.stat()
    text = path.read_text()
    assert 'batch = { input = "0.15"' in text
    path.write_text(text.replace('batch = { input = "0.15"', 'batch = { input = "0.16"'))  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same time: no pass can see the change
    assert path.stat().st_size == stat.st_size
    time.sleep(1.0)  # several passes
    assert not any("on SIGHUP" in line for line in served.reload_lines())
    job = served.meter_a_job(NEW_MODEL)  # still the old rate
    rows = output_rows(served.stack.storage_client(), str(job.output_directory))
    old = expected_for(rows, "gemini-2.5-flash").cost_pico
    assert job.cost_pico == old

    served.process.send_signal(signal.SIGHUP)
    table = PricingTable.load(served.pricing)
    assert served.wait_for_log("on SIGHUP").startswith(
        f"pricing table reloaded on SIGHUP from {served.pricing}: version {table.version[:12]} with")
    job = served.meter_a_job(NEW_MODEL)
    rows = output_rows(served.stack.storage_client(), str(job.output_directory))
    usage = [row["response"]["usageMetadata"] for row in rows]
    uncached = sum(u["promptTokenCount"] - u.get("cachedContentTokenCount", 0) for u in usage)
    assert uncached > 0
    assert job.cost_pico == expected_for(rows, "gemini-2.5-flash").cost_pico + uncached * (160_000 - 150_000)
