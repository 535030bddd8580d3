"""A team sees and touches only its own files and batches: another team's answers 404 exactly like a missing one
(get, content, delete, cancel), and lists show only the caller's."""

from __future__ import annotations

import openai
import pytest

from tests.openai_door.conftest import CHAT_FILE, said, sdk, wait_for
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow


def test_another_teams_file_and_batch_are_404_and_lists_show_only_ones_own(door: Proxied) -> None:
    a, b = sdk(door, "team-a"), sdk(door, "team-b")
    file = a.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch")
    batch = a.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_for(a, batch.id, ("completed",))
    output = done.output_file_id
    assert output is not None

    missing_file, missing_batch = "file-" + "0" * 24, "batch_" + "0" * 24
    for file_id in (file.id, output, missing_file):
        for call in (b.files.retrieve, b.files.content, b.files.delete):
            with pytest.raises(openai.NotFoundError) as caught:
                call(file_id)
            assert said(caught.value) == f"No such File object: {file_id}"
    for batch_id in (batch.id, missing_batch):
        for act in (b.batches.retrieve, b.batches.cancel):
            with pytest.raises(openai.NotFoundError) as found:
                act(batch_id)
            assert said(found.value) == f"No batch found with id {batch_id!r}."
    with pytest.raises(openai.NotFoundError):
        b.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")

    b_ids = {f.id for f in b.files.list()}
    assert file.id not in b_ids and output not in b_ids
    assert batch.id not in {x.id for x in b.batches.list()}
    a_files = {f.id: f.purpose for f in a.files.list()}
    assert a_files[file.id] == "batch" and a_files[output] == "batch_output"
    assert batch.id in {x.id for x in a.batches.list()}
    assert set(a_files) >= {f.id for f in a.files.list(purpose="batch_output")} | {output}
    assert all(f.purpose == "batch" for f in a.files.list(purpose="batch"))
