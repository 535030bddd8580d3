"""The meter reads every job's outputs over one Cloud Storage client, and closes its connections when closed: a
client per job left a pooled connection behind each time (the soak saw them pile up in CLOSE_WAIT)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.cloud import storage

from proxy.metering.job_meter import JobMeter, storage_client
from proxy.metering.pricing import PricingTable
from tests.metering.completion.conftest import submit, text_line
from tests.metering.completion.test_meter_command import wait_ended
from tests.providers.vertex.conftest import running

# Runs the emulator and a proxy: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def test_one_client_meters_every_job_and_close_releases_its_connections(tmp_path: Path) -> None:
    with running(tmp_path) as env:
        names = [submit(env, "gemini-2.5-flash-lite", [text_line(f"Job {i}, line {j}") for j in range(2)])
                 for i in range(3)]
        for name in names:
            wait_ended(env, name)
        made: list[storage.Client] = []

        def counted() -> storage.Client:
            made.append(storage_client())
            return made[-1]

        meter = JobMeter(env.sessions, pricing=PricingTable.load(), storage_factory=counted)
        outcomes = meter.meter_due(force=True)
        assert sorted((o.name, o.result) for o in outcomes) == sorted((name, "metered") for name in names)
        assert len(made) == 1
        pools = made[0]._http.adapters["http://"].poolmanager.pools
        assert len(pools) == 1  # the one host, kept alive between jobs
        meter.close()
        assert len(pools) == 0
