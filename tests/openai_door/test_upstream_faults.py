"""Faults of the OpenAI and Azure deployments behind the door, isolation between teams on every provider, and a
batch whose create was never recorded adopted by reconciliation.

Faults come from the emulator's fault injection on the stand-in's paths: 429 with Retry-After and 5xx that do not
clear on every deployment of the model are answered with 429 in OpenAI's envelope (placement found no deployment
to take the batch; Retry-After passed on, each deployment's refusal named); a create whose reply is lost (reset,
timeout) after the batch was made upstream is found by its label, not made twice. gpt-4o-mini runs on three Azure
deployments and OpenAI (a spill-over), so its faults are set on all of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from proxy.cli import cli
from proxy.ledger.models import Job, OpenAIBatch
from tests.openai_door.conftest import said, sdk, wait_for
from tests.openai_door.test_upstream_workflow import COUNT, lines
from tests.openai_door.upstream_support import AZURE_MODEL, OPENAI_MODEL, upstream_door
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow
# model -> (the stand-in's path prefix, where its batch creates go)
PATHS = {OPENAI_MODEL: ("/openai-api/", "/openai-api/v1/batches"),
         AZURE_MODEL: ("/azure/eastus/", "/azure/eastus/openai/batches")}
MODELS = list(PATHS)
RESOURCES = ("eastus", "westus", "swedencentral")
# every stand-in path a model's deployments answer under
DEPLOYMENT_PATHS = {OPENAI_MODEL: ("/openai-api/",), AZURE_MODEL: tuple(f"/azure/{r}/" for r in RESOURCES) + (
    "/openai-api/",)}
CREATE_PATHS = {OPENAI_MODEL: ("/openai-api/v1/batches",),
                AZURE_MODEL: tuple(f"/azure/{r}/openai/batches" for r in RESOURCES) + ("/openai-api/v1/batches",)}


def on_every_deployment(model: str, paths: dict[str, tuple[str, ...]] = DEPLOYMENT_PATHS,
                        **rule: Any) -> list[dict[str, Any]]:
    """One fault rule per deployment of `model` (placement would route around a fault on only some)."""
    return [{**rule, "path": path} for path in paths[model]]


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from upstream_door(tmp_path_factory.mktemp("upstream-faults"))


@pytest.fixture(autouse=True)
def _no_faults(door: Proxied) -> Iterator[None]:
    yield
    door.stack.set_faults(None)
    with door.sessions.begin() as session:  # the breakers and queue figures the faults left: each test starts anew
        session.execute(text("DELETE FROM placement_targets"))


def upload(door: Proxied, model: str, who: str = "team-a") -> str:
    return sdk(door, who).files.create(file=("batch.jsonl", lines(model)), purpose="batch").id


def create(door: Proxied, file_id: str, who: str = "team-a") -> Any:
    return sdk(door, who).batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h")


def upstream_creates(door: Proxied, model: str) -> list[dict[str, Any]]:
    return [e for e in door.stack.request_log if e["method"] == "POST" and e["path"] in CREATE_PATHS[model]]


def upstream_batches_labelled(door: Proxied, model: str, batch_id: str) -> int:
    """How many batches the stand-ins of the model's deployments hold with this door batch's label."""
    state = door.stack.state
    standins = [state.openai] + ([state.azure[r] for r in RESOURCES] if model == AZURE_MODEL else [])
    return sum(1 for standin in standins for b in standin.batches.newest_first()
               if (b.get("metadata") or {}).get("vbp-batch") == batch_id)


@pytest.mark.parametrize("model", MODELS)
def test_a_429_that_does_not_clear_answers_429_with_its_retry_after(door: Proxied, model: str) -> None:
    file_id = upload(door, model)
    door.stack.set_faults(errors=on_every_deployment(model, status=429, count=50, method="create", retry_after=1))
    with pytest.raises(openai.RateLimitError) as caught:
        create(door, file_id)
    assert caught.value.response.headers["retry-after"] == "1"
    assert "could not upload the batch file" in said(caught.value)
    batch_id = sdk(door).batches.list().data[0].id
    failed = sdk(door).batches.retrieve(batch_id)
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data is not None
    assert failed.errors.data[0].code == "rate_limit_exceeded"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 500}, {"fault": "reset"}])
def test_5xx_and_resets_that_do_not_clear_answer_429(door: Proxied, model: str, fault: dict[str, Any]) -> None:
    file_id = upload(door, model)
    door.stack.set_faults(errors=on_every_deployment(model, **fault, count=50, method="create"))
    with pytest.raises(openai.RateLimitError) as caught:
        create(door, file_id)
    assert caught.value.code == "rate_limit_exceeded"
    assert said(caught.value).startswith(f"No deployment of {model} can take this batch")
    assert said(caught.value).count("could not upload the batch file" if "status" in fault else
                                    "broke the connection") == len(DEPLOYMENT_PATHS[model])
    assert door.stack.state.openai_key not in said(caught.value)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fault", [{"fault": "reset"}, {"status": 503}])
def test_a_create_whose_reply_is_lost_is_made_once(door: Proxied, model: str, fault: dict[str, Any]) -> None:
    file_id = upload(door, model)
    before = len(upstream_creates(door, model))
    # the first batch create, wherever placement sends it
    door.stack.set_faults(errors=on_every_deployment(model, CREATE_PATHS, **fault, count=1, method="create",
                                                     after_serving=True))
    created = create(door, file_id)
    assert len(upstream_creates(door, model)) == before + 1  # sent once; the lookup found what it made
    assert upstream_batches_labelled(door, model, created.id) == 1
    done = wait_for(sdk(door), created.id, ("completed", "failed"))
    assert done.status == "completed" and done.request_counts is not None
    assert done.request_counts.completed == COUNT


@pytest.mark.parametrize("model", MODELS)
def test_reads_survive_transient_faults_while_polling(door: Proxied, model: str) -> None:
    created = create(door, upload(door, model))
    door.stack.set_faults(errors=on_every_deployment(model, status=503, rate=0.5, method="get"))
    done = wait_for(sdk(door), created.id, ("completed", "failed"))
    assert done.status == "completed"
    door.stack.set_faults(None)
    out = sdk(door).files.content(str(done.output_file_id)).text.splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in out) == [f"line-{i}" for i in range(COUNT)]


@pytest.mark.parametrize("model", MODELS)
def test_another_teams_batch_and_files_answer_404(door: Proxied, model: str) -> None:
    file_id = upload(door, model)
    done = wait_for(sdk(door), create(door, file_id).id, ("completed",))
    other = sdk(door, "team-b")
    for call in (lambda: other.batches.retrieve(done.id), lambda: other.batches.cancel(done.id),
                 lambda: other.files.retrieve(file_id), lambda: other.files.content(file_id),
                 lambda: other.files.retrieve(str(done.output_file_id)),
                 lambda: other.files.content(str(done.output_file_id)), lambda: create(door, file_id, "team-b")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert done.id not in [b.id for b in other.batches.list().data]
    assert {file_id, done.output_file_id} & {f.id for f in other.files.list().data} == set()


@pytest.mark.parametrize("model", MODELS)
def test_a_cancel_reaches_the_deployment(door: Proxied, model: str) -> None:
    state = door.stack.state
    pace, state.job_seconds = state.job_seconds, 30.0  # this batch runs long enough to be cancelled
    seen = len(door.stack.request_log)
    try:
        created = create(door, upload(door, model))
    finally:
        state.job_seconds = pace
    cancelled = sdk(door).batches.cancel(created.id)
    assert cancelled.status in ("cancelling", "cancelled")  # the poller may have seen the end already
    cancels = [e for e in door.stack.request_log[seen:] if e["method"] == "POST" and str(e["path"]).endswith("/cancel")
               and str(e["path"]).startswith(DEPLOYMENT_PATHS[model])]
    assert len(cancels) == 1 and cancels[0]["status"] == 200
    done = wait_for(sdk(door), created.id, ("cancelled",))
    assert done.request_counts is not None and done.request_counts.completed < COUNT


@pytest.mark.parametrize("model", MODELS)
def test_a_batch_never_recorded_is_adopted_by_reconciliation(door: Proxied, model: str) -> None:
    client = sdk(door)
    file_id = upload(door, model)
    with door.sessions.begin() as session:
        session.execute(text("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN "
                             "SELECT RAISE(ABORT, 'the ledger refuses writes (test)'); END"))
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            create(door, file_id)
    finally:
        with door.sessions.begin() as session:
            session.execute(text("DROP TRIGGER refuse_jobs"))
    assert "Do not create it again" in said(caught.value)
    with door.sessions() as session:
        batch = session.scalars(select(OpenAIBatch).where(OpenAIBatch.input_file_id == file_id)).one()
        batch_id = batch.id
        assert batch.job_pk is None

    env = {"VBP_DATABASE_URL": str(door.sessions.kw["bind"].url)}
    result = CliRunner().invoke(cli, ["reconcile", "--json", "--min-age", "0s"], env=env)
    assert result.exit_code == 0, result.output
    adopted = [item for item in json.loads(result.stdout) if item["result"] == "adopted"]
    assert len(adopted) == 1 and adopted[0]["team"] == "team-a"
    with door.sessions() as session:
        job = session.scalars(select(Job).where(Job.name == adopted[0]["name"])).one()
        assert (job.batch_id, job.origin, job.deployment) == (batch_id, "reconcile", job.project)
    done = wait_for(client, batch_id, ("completed",))
    assert done.errors is None and done.output_file_id is not None
    assert upstream_batches_labelled(door, model, batch_id) == 1


def test_a_deployment_without_its_key_is_a_500_naming_the_variable(door: Proxied,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    file_id = upload(door, OPENAI_MODEL)
    key = door.stack.state.openai_key
    monkeypatch.delenv("VBP_EMULATOR_OPENAI_KEY")
    with pytest.raises(openai.InternalServerError) as caught:
        create(door, file_id)
    assert caught.value.status_code == 500
    assert said(caught.value) == ("The proxy has no credentials for deployment openai-gpt-4.1-mini: the env var "
                                  "VBP_EMULATOR_OPENAI_KEY (a deployment's api_key_env) is not set.")
    assert key not in said(caught.value)


@pytest.fixture
def tiny_azure_quota(door: Proxied) -> Iterator[list[Any]]:
    """Every Azure resource's enqueued-token quota below one batch of COUNT lines (COUNT * (9 + 10) tokens): the
    catalog does not know (it says a billion), so placement learns it from their refusals."""
    standins = [door.stack.state.azure[resource] for resource in RESOURCES]
    saved = [(standin.token_quota, standin.quota_mode) for standin in standins]
    for standin in standins:
        standin.token_quota = 50
    try:
        yield standins
    finally:
        for standin, (quota, mode) in zip(standins, saved, strict=True):
            standin.token_quota, standin.quota_mode = quota, mode


def _azure_files(door: Proxied) -> int:
    return sum(len(door.stack.state.azure[r].files.newest_first()) for r in RESOURCES)


@pytest.mark.parametrize("mode", ["fail-fast", "fail-batch"])
def test_azure_queues_over_their_quota_are_routed_around(door: Proxied, tiny_azure_quota: list[Any],
                                                         mode: str) -> None:
    for standin in tiny_azure_quota:
        standin.quota_mode = mode
    file_id = upload(door, AZURE_MODEL)
    files = _azure_files(door)
    created = create(door, file_id)
    # each Azure deployment refused it once (at create, or as a batch failed at once), then OpenAI took it
    with door.sessions() as session:
        job = session.scalars(select(Job).where(Job.batch_id == created.id)).one()
        assert job.deployment == "openai-gpt-4o-mini"
    refused = [e for e in upstream_creates(door, AZURE_MODEL) if "/azure/" in str(e["path"])][-3:]
    assert [e["status"] for e in refused] == ([400] * 3 if mode == "fail-fast" else [201] * 3)
    assert _azure_files(door) == files  # the files uploaded for the refused creates were deleted
    done = wait_for(sdk(door), created.id, ("completed",))
    assert done.request_counts is not None and done.request_counts.completed == COUNT
