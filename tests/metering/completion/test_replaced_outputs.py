"""An output file replaced between the meter's listing and its read (another writer wrote it again: its listed
generation is gone) is listed and read again at once, instead of waiting for the job's next retry time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage
from sqlalchemy import select

from proxy.ledger.models import Job, JobMetering
from proxy.metering.job_meter import RELISTS, JobMeter
from proxy.metering.pricing import PricingTable
from tests.metering.completion.conftest import submit, text_line
from tests.metering.completion.test_meter_command import wait_ended
from tests.providers.vertex.conftest import running

# Runs the emulator and a proxy: left out of `make test-fast`.
pytestmark = pytest.mark.slow


class RewritingAfterListing(storage.Client):
    """Google's client, which writes every object it lists again (same bytes, a new generation) right after
    listing it, `times` times: what a second writer of the same output does to a reader that pinned a generation."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times
        self.listed: list[dict[str, int]] = []

    def list_blobs(self, *args: Any, **kwargs: Any) -> Iterator[storage.Blob]:  # type: ignore[override]
        blobs = list(super().list_blobs(*args, **kwargs))
        self.listed.append({blob.name: blob.generation for blob in blobs})
        if self.times > 0:
            self.times -= 1
            for blob in blobs:
                blob.bucket.blob(blob.name).upload_from_string(blob.download_as_bytes())
        return iter(blobs)


def meter_with(env: Any, client: RewritingAfterListing) -> Any:
    meter = JobMeter(env.sessions, pricing=PricingTable.load(), storage_factory=lambda: client)
    try:
        [outcome] = meter.meter_due(force=True)
    finally:
        meter.close()
    return outcome


def test_a_replaced_output_is_listed_again_and_metered_at_once(tmp_path: Path) -> None:
    with running(tmp_path) as env:
        lines = [text_line(f"Line {i} of a job whose outputs are written twice") for i in range(3)]
        name = submit(env, "gemini-2.5-flash-lite", lines)
        wait_ended(env, name)
        client = RewritingAfterListing(times=RELISTS)
        outcome = meter_with(env, client)
        assert (outcome.name, outcome.result) == (name, "metered"), outcome.detail
        assert len(client.listed) == RELISTS + 1
        first, last = client.listed[0], client.listed[-1]
        assert first.keys() == last.keys() and all(first[path] != last[path] for path in first)
        with env.sessions() as session:
            job = session.scalars(select(Job).where(Job.name == name)).one()
            [metering] = session.scalars(select(JobMetering).where(JobMetering.job_pk == job.id)).all()
            assert (job.lines_succeeded, job.metering_attempts) == (3, 1)  # one claim, read three times
            # The figure is the one read from the generations of the last listing, which are the live ones.
            assert {o["uri"].split("/", 3)[3]: o["generation"] for o in metering.objects} == last


def test_an_output_replaced_at_every_listing_waits_for_the_next_retry(tmp_path: Path) -> None:
    with running(tmp_path) as env:
        name = submit(env, "gemini-2.5-flash-lite", [text_line("A job whose outputs never stop changing")])
        wait_ended(env, name)
        client = RewritingAfterListing(times=RELISTS + 1)
        outcome = meter_with(env, client)
        assert (outcome.name, outcome.result) == (name, "retry")
        assert "is gone (404)" in outcome.detail
        assert len(client.listed) == RELISTS + 1
        with env.sessions() as session:
            job = session.scalars(select(Job).where(Job.name == name)).one()
            assert (job.metering_state, job.metering_attempts, job.cost_pico) == ("due", 1, None)
