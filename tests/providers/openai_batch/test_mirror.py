"""An ended batch's files are mirrored into the files bucket once, however many tasks of the proxy ask at once (the
poller and a door retrieve both read an ended batch): one download each, and the object is never written again,
so a meter reading the generation it listed still finds it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from google.cloud import storage

from proxy.catalog.catalog import Catalog
from proxy.emulator.stack import EmulatorStack
from proxy.providers.openai_batch.mirror import mirror_outputs
from tests.providers.openai_batch.test_client import calls, client_for, lines_for, run_to_end

pytestmark = pytest.mark.slow

NAME = "openai-gpt-4o-mini"


def test_concurrent_mirrors_of_a_batch_download_and_write_each_file_once(stack: EmulatorStack,
                                                                          catalog: Catalog) -> None:
    folder = f"team-a/openai/batches/batch_{uuid.uuid4().hex}/upstream/"
    gcs = storage.Client()

    async def scenario() -> dict[str, object]:
        async with client_for(catalog, NAME) as client:
            uploaded = await client.upload_file(lines_for(catalog, NAME, 4), filename="in.jsonl")
            created, _ = await client.create_batch(input_file_id=uploaded["id"], endpoint="/v1/chat/completions",
                                                   metadata={}, label="vbp-batch")
            batch = await run_to_end(client, created["id"])
            await asyncio.gather(*(mirror_outputs(client, gcs, batch, bucket=stack.files_bucket, folder=folder)
                                   for _ in range(4)))
            return batch

    try:
        batch = asyncio.run(scenario())
        output = gcs.bucket(stack.files_bucket).get_blob(folder + "output.jsonl")
        assert output is not None and len(output.download_as_bytes().splitlines()) == 4
        first = output.generation
        downloads = calls(stack, NAME, "GET", f"/files/{batch['output_file_id']}/content")
        assert [e["status"] for e in downloads] == [200]
        asyncio.run(_mirror_again(catalog, gcs, batch, stack.files_bucket, folder))
        again = gcs.bucket(stack.files_bucket).get_blob(folder + "output.jsonl")
        assert again is not None and again.generation == first  # found there: neither read nor written again
        assert len(calls(stack, NAME, "GET", f"/files/{batch['output_file_id']}/content")) == 1
    finally:
        gcs.close()


async def _mirror_again(catalog: Catalog, gcs: storage.Client, batch: dict[str, object], bucket: str,
                        folder: str) -> None:
    async with client_for(catalog, NAME) as client:
        await mirror_outputs(client, gcs, batch, bucket=bucket, folder=folder)
