"""A batch whose Vertex job was created but never recorded (the database refused the write) is repaired by
reconciliation: the job is adopted from its labels and linked to the batch written before it, by its `vbp-batch`
label, so the batch runs on as if nothing happened."""

from __future__ import annotations

import json

import openai
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from proxy.cli import cli
from proxy.ledger.models import Job, OpenAIBatch
from tests.openai_door.conftest import CHAT_FILE, sdk, wait_for
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow


def test_a_lost_create_is_linked_to_its_batch_by_reconciliation(door: Proxied) -> None:
    client = sdk(door)
    file_id = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch").id
    with door.sessions.begin() as session:
        session.execute(text("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN "
                             "SELECT RAISE(ABORT, 'the ledger refuses writes (test)'); END"))
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    finally:
        with door.sessions.begin() as session:
            session.execute(text("DROP TRIGGER refuse_jobs"))
    assert "Do not create it again" in caught.value.message
    with door.sessions() as session:
        batch = session.scalars(select(OpenAIBatch).where(OpenAIBatch.input_file_id == file_id)).one()
        batch_id = batch.id
        assert batch.job_pk is None
    assert client.batches.retrieve(batch_id).status == "failed"  # as far as the ledger knows

    env = {"VBP_DATABASE_URL": str(door.sessions.kw["bind"].url)}
    result = CliRunner().invoke(cli, ["reconcile", "--json", "--min-age", "0s", "--project",
                                      f"{door.stack.project_id}/us-central1"], env=env)
    assert result.exit_code == 0, result.output
    adopted = [item for item in json.loads(result.stdout) if item["result"] == "adopted"]
    assert len(adopted) == 1 and adopted[0]["team"] == "team-a"

    with door.sessions() as session:
        job = session.scalars(select(Job).where(Job.name == adopted[0]["name"])).one()
        assert job.batch_id == batch_id and job.labels["vbp-batch"] == batch_id
    done = wait_for(client, batch_id, ("completed",))
    assert done.errors is None and done.output_file_id is not None
    assert sorted(json.loads(line)["custom_id"] for line in client.files.content(done.output_file_id).iter_lines()
                  if line) == ["request-1", "request-2"]
