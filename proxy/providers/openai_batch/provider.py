"""OpenAI and Azure OpenAI batches behind the provider seam (`proxy.providers.base.BatchProvider`).

- A job is named `{provider}/{deployment}/batches/{upstream id}`; the deployment (its URL and credentials) is
  looked up in the model catalog (VBP_MODELS_FILE) by name.
- `read_job` GETs the batch; once it has ended, its output and error files are mirrored into VBP_FILES_BUCKET
  (`mirror.py`) and the reply names that folder as the job's output directory, so that `output_objects` lists
  them there like a Vertex job's and metering needs no upstream access at all.
- Rows are OpenAI batch output lines (`usage.py`).
- Reconciliation lists each deployment's batches and keeps those whose metadata carries the proxy's `vbp-team`
  label and names that deployment (`vbp-deployment`: deployments may share an account). A job's `project` in
  the ledger is its deployment's name and its `location` the provider's name.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.catalog.catalog import Catalog
from proxy.catalog.deployment import Deployment
from proxy.catalog.load import load_catalog
from proxy.providers.base import NoOutput, NotReady, OutputObject, RowUsage, Unreadable, UpstreamJob
from proxy.providers.openai_batch.client import OpenAIBatchClient
from proxy.providers.openai_batch.errors import UpstreamRefused
from proxy.providers.openai_batch.job_fields import field_of, job_reply
from proxy.providers.openai_batch.mirror import mirror_folder, mirror_outputs
from proxy.providers.openai_batch.names import DEPLOYMENT_LABEL, BatchName
from proxy.providers.openai_batch.states import STATUS_NAMES, job_state
from proxy.providers.openai_batch.usage import RowReader, openai_row_usage
from proxy.providers.vertex.create_body import BATCH_LABEL, KEY_LABEL, TEAM_LABEL
from proxy.providers.vertex.outputs import BucketMissing, list_output_objects, split_gcs_uri
from proxy.providers.vertex.states import JobState, parse_state
from proxy.settings import Settings

if TYPE_CHECKING:
    from google.cloud import storage

    from proxy.ledger.models import Job
    from proxy.metering.totals import JobTotals
    from proxy.upstream import Upstream

log = logging.getLogger(__name__)

API_VERSION = "v1"
_SUCCESS = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_PARTIALLY_SUCCEEDED}


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Catalog:
    return load_catalog(path)


def catalog_of(settings: Settings | None) -> Catalog:
    """The catalog VBP_MODELS_FILE names (read again when the file changes); the empty one without it."""
    path = (settings or Settings.from_env()).models_file
    if not path:
        return Catalog()
    return _load(path, Path(path).stat().st_mtime)


class OpenAIBatchProvider:
    """The `openai` or `azure` provider; `settings` None (a metering worker) still meters and reads rows."""

    def __init__(self, name: str, settings: Settings | None = None) -> None:
        self.name = name
        self.settings = settings

    # -- the deployments -----------------------------------------------------------------------------------

    def deployment(self, name: str) -> Deployment | None:
        """The catalog's deployment called `name`, if it is one of this provider's."""
        found = catalog_of(self.settings).named(name)
        return found if found is not None and found.provider == self.name else None

    def client(self, deployment: Deployment) -> OpenAIBatchClient:
        """A client for one deployment (close it when done), with the proxy's timeouts and retry budget."""
        from proxy.upstream.retry import RetryPolicy

        settings = self.settings
        if settings is None:
            return OpenAIBatchClient(deployment)
        return OpenAIBatchClient(deployment, timeout=settings.upstream_timeout,
                                 connect_timeout=settings.upstream_connect_timeout,
                                 policy=RetryPolicy(attempts=settings.retry_attempts,
                                                    max_seconds=settings.retry_max_seconds))

    # -- the seam ------------------------------------------------------------------------------------------

    def ended(self, state: str) -> bool:
        parsed = parse_state(state)
        return parsed is not None and parsed.terminal

    def state_name(self, state: str) -> str:
        """The ledger's state as OpenAI names it (`completed`)."""
        parsed = parse_state(state)
        return STATUS_NAMES.get(parsed, state) if parsed is not None else state

    async def read_job(self, upstream: Upstream, *, name: str, api_version: str,
                       location: str) -> dict[str, object] | None:
        """GET the batch; once ended, mirror its files first. None (logged) when it cannot be read or mirrored."""
        parsed = BatchName.parse(name)
        deployment = self.deployment(parsed.deployment) if parsed is not None else None
        if parsed is None or deployment is None:
            log.warning("poll of %s: no deployment of %s in the catalog answers to it", name, self.name)
            return None
        try:
            async with self.client(deployment) as client:
                batch = await client.get_batch(parsed.batch_id)
                return await self._recorded(client, batch, deployment)
        except UpstreamRefused as exc:
            log.warning("poll of %s failed: %s", name, exc.message)
        except Exception as exc:  # a mirror that failed midway (storage); tried again at the next poll
            log.warning("poll of %s could not mirror its outputs: %s", name, exc, exc_info=True)
        return None

    async def _recorded(self, client: OpenAIBatchClient, batch: dict[str, Any],
                        deployment: Deployment) -> dict[str, object]:
        counts = field_of(batch, "request_counts")
        state = job_state(batch.get("status"), failed_requests=int(counts.get("failed") or 0))
        folder = None
        if state is not None and state.terminal:
            folder = await self.mirror(client, batch)
        return job_reply(batch, provider=self.name, deployment=deployment.name, model=deployment.model,
                         output_directory=folder)

    async def mirror(self, client: OpenAIBatchClient, batch: dict[str, Any]) -> str | None:
        """Mirror an ended batch of the door; the gs:// folder, or None for a batch that is not the door's."""
        metadata = field_of(batch, "metadata")
        team, batch_id = metadata.get(TEAM_LABEL), metadata.get(BATCH_LABEL)
        bucket = (self.settings or Settings.from_env()).files_bucket
        if not team or not batch_id or not bucket:
            return None
        from google.cloud import storage

        folder = mirror_folder(bucket, str(team), str(batch_id))
        storage_client = storage.Client()
        try:
            await mirror_outputs(client, storage_client, batch, bucket=bucket, folder=split_gcs_uri(folder)[1])
        finally:
            storage_client.close()
        return folder

    def output_objects(self, storage_client: storage.Client, job: Job) -> list[OutputObject]:
        """The mirrored output and error files (see `read_job`), or why there is nothing to read."""
        ended = self.state_name(job.state)
        if not job.output_directory:
            raise NotReady(f"ended {ended} but its output files are not mirrored yet", refetch=True)
        try:
            objects = list_output_objects(storage_client, job.output_directory)
        except BucketMissing as exc:
            raise Unreadable(f"{exc}: the mirrored outputs are gone; this job has no cost figure") from exc
        if not objects:
            if parse_state(job.state) in _SUCCESS and (job.succeeded_count or 0) > 0:
                raise NotReady(f"ended {ended} with {job.succeeded_count:,} completed request(s), but no mirrored "
                               f"file under {job.output_directory} is visible yet", refetch=True)
            raise NoOutput(f"ended {ended} with no output file: nothing is billed")
        return objects

    def row_reader(self, totals: JobTotals) -> RowReader:
        return RowReader(totals)

    def row_usage(self, line: bytes) -> RowUsage:
        return openai_row_usage(line)

    def model_id(self, model: str) -> str:
        """OpenAI's model names are bare ids already."""
        return model.strip()

    def served(self, project: str, location: str) -> bool:
        """Whether `project` is one of this provider's deployments in the catalog (and `location` the provider)."""
        return location == self.name and self.deployment(project) is not None

    def label_value(self, team: str) -> str:
        """Metadata values hold up to 512 characters: the team name as it is."""
        return team

    async def list_labelled_jobs(self, upstream: Upstream, *, project: str, location: str) -> list[UpstreamJob]:
        """Every batch of the deployment `project` whose metadata carries a `vbp-team` label."""
        from proxy.providers.base import ListingIncomplete

        deployment = self.deployment(project)
        if deployment is None:
            return []
        jobs: list[UpstreamJob] = []
        try:
            async with self.client(deployment) as client:
                async for batch in client.list_batches():
                    job = self._listed(batch, deployment)
                    if job is not None:
                        jobs.append(job)
        except UpstreamRefused as exc:
            raise ListingIncomplete(f"could not list {project}: {exc.message}", jobs) from exc
        return jobs

    def _listed(self, batch: dict[str, Any], deployment: Deployment) -> UpstreamJob | None:
        metadata = field_of(batch, "metadata")
        if not metadata.get(TEAM_LABEL) or not isinstance(batch.get("id"), str):
            return None
        if metadata.get(DEPLOYMENT_LABEL) != deployment.name:  # another deployment's batch on a shared account
            return None
        reply = job_reply(batch, provider=self.name, deployment=deployment.name, model=deployment.model)
        created = batch.get("created_at")
        return UpstreamJob(
            name=str(reply["name"]), api_version=API_VERSION, project=deployment.name, location=self.name,
            job_id=str(reply["jobId"]), team_label=str(metadata[TEAM_LABEL]), key_id=str(metadata.get(KEY_LABEL, "")),
            created=datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
            resource=reply, batch_id=str(metadata.get(BATCH_LABEL, "")), deployment=deployment.name)
