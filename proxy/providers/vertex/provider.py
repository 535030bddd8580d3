"""Vertex AI batch prediction behind the provider seam (`proxy.providers.base.BatchProvider`).

- A job is read with a GET of `/{api_version}/{name}` on the location's host (or VBP_VERTEX_BASE_URL).
- Its outputs are the final `*.jsonl` files under the job's gcsOutputDirectory (`outputs.py`); a job writing to
  BigQuery cannot be metered yet.
- Its rows are read by `scanner.LineScanner` (the compiled Gemini fast path when it is built) and `usage.py`.
- Reconciliation lists the location's batchPredictionJobs filtered on the `vbp-team` label, all pages.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from proxy.clock import parse_rfc3339
from proxy.errors import ApiError
from proxy.providers.base import (
    ListingIncomplete,
    NoOutput,
    NotReady,
    OutputObject,
    RowUsage,
    Unreadable,
    UpstreamJob,
)
from proxy.providers.vertex import filters
from proxy.providers.vertex.create_body import BATCH_LABEL, KEY_LABEL, TEAM_LABEL
from proxy.providers.vertex.create_body import label_value as fit_label
from proxy.providers.vertex.outputs import BucketMissing, list_output_objects
from proxy.providers.vertex.resources import JobName, google_base_url, valid_location, valid_project
from proxy.providers.vertex.resources import model_id as bare_model_id
from proxy.providers.vertex.scanner import LineScanner
from proxy.providers.vertex.states import JobState, parse_state
from proxy.providers.vertex.usage import parse_row

if TYPE_CHECKING:
    from google.cloud import storage

    from proxy.ledger.models import Job
    from proxy.metering.totals import JobTotals
    from proxy.upstream import Upstream

log = logging.getLogger(__name__)

NAME = "vertex"
LIST_API_VERSION = "v1"
LIST_PAGE_SIZE = 1000
LABELLED = filters.render(filters.Compare(("labels", TEAM_LABEL), ":", "*"))
_SUCCESS_STATES = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_PARTIALLY_SUCCEEDED}
_ACCEPT_JSON = [("accept", "application/json")]


def is_bigquery(job: Job) -> bool:
    """Whether the job writes its outputs to BigQuery (which metering cannot read yet)."""
    return job.output_format == "bigquery" or any(
        (value or "").startswith("bq://") for value in (job.output_prefix, job.output_directory))


class VertexProvider:
    """Vertex's batchPredictionJobs; `base_url` (VBP_VERTEX_BASE_URL) replaces Google's per-location hosts."""

    name = NAME

    def __init__(self, *, base_url: str | None = None) -> None:
        self.base_url = base_url

    def _base(self, location: str) -> str:
        return (self.base_url or google_base_url(location)).rstrip("/")

    def ended(self, state: str) -> bool:
        """Whether the state is terminal (SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELLED, EXPIRED)."""
        parsed = parse_state(state)
        return parsed is not None and parsed.terminal

    def state_name(self, state: str) -> str:
        """`JOB_STATE_SUCCEEDED` -> `SUCCEEDED`."""
        return state.removeprefix("JOB_STATE_")

    async def read_job(self, upstream: Upstream, *, name: str, api_version: str,
                       location: str) -> dict[str, object] | None:
        """GET the job; None (logged) on any answer but 200 with a JSON object."""
        try:
            response = await upstream.send("GET", f"{self._base(location)}/{api_version}/{name}",
                                           headers=list(_ACCEPT_JSON), body=None, idempotent=True)
            body = await response.read()
            if response.status != 200:
                log.warning("poll of %s answered %d", name, response.status)
                return None
            parsed = json.loads(body)
        except (ApiError, ValueError) as exc:
            log.warning("poll of %s failed: %s", name, exc)
            return None
        return parsed if isinstance(parsed, dict) else None

    def output_objects(self, storage_client: storage.Client, job: Job) -> list[OutputObject]:
        """The job's final output objects, or why there is nothing to read (NoOutput, Unreadable, NotReady)."""
        if is_bigquery(job):
            raise Unreadable("BigQuery outputs cannot be metered yet; this job has no cost figure")
        state = parse_state(job.state)
        ended = self.state_name(job.state)
        if not job.output_directory:
            if state in _SUCCESS_STATES:
                raise NotReady(f"ended {ended} but Vertex shows no output directory (outputInfo) yet", refetch=True)
            raise NoOutput(f"ended {ended} before writing any output (no output directory): nothing was "
                           "completed, nothing is billed")
        try:
            objects = list_output_objects(storage_client, job.output_directory)
        except BucketMissing as exc:
            completed = job.succeeded_count or 0
            if completed:
                raise Unreadable(f"{exc}, so the {completed:,} completed line(s) cannot be read (was it deleted?); "
                                 "this job has no cost figure") from exc
            raise NoOutput(f"ended {ended}; {exc}, so the job wrote nothing: nothing is billed") from exc
        if not objects:
            if state in _SUCCESS_STATES and (job.succeeded_count or 0) > 0:
                raise NotReady(f"ended {ended} with {job.succeeded_count:,} completed line(s), but no output file "
                               f"under {job.output_directory} is visible yet")
            raise NoOutput(f"ended {ended} with no output file under {job.output_directory}: nothing is billed")
        return objects

    def row_reader(self, totals: JobTotals) -> LineScanner:
        """The Gemini/embedding row reader (the compiled scanner when it is built)."""
        return LineScanner(totals)

    def row_usage(self, line: bytes) -> RowUsage:
        """One row's usage, by the parser the scanner leaves its doubtful lines to (`usage.parse_row`)."""
        return parse_row(line)

    def model_id(self, model: str) -> str:
        """`publishers/google/models/gemini-2.5-flash@001` -> `gemini-2.5-flash@001`'s id; a bare id unchanged."""
        name = model.strip()
        if "/" in name:
            name = bare_model_id(name) or name
        return name

    def served(self, project: str, location: str) -> bool:
        """Whether the pair is a valid project id and location."""
        return valid_project(project) and valid_location(location)

    def label_value(self, team: str) -> str:
        """The team as the `vbp-team` label holds it."""
        return fit_label(team)

    async def list_labelled_jobs(self, upstream: Upstream, *, project: str, location: str) -> list[UpstreamJob]:
        """Every job of the pair with a `vbp-team` label, all pages; ListingIncomplete if Vertex says no."""
        url = (f"{self._base(location)}/{LIST_API_VERSION}/projects/{project}/locations/{location}/"
               f"batchPredictionJobs?filter={quote(LABELLED, safe='')}&pageSize={LIST_PAGE_SIZE}")
        jobs: list[UpstreamJob] = []
        token: str | None = None
        while True:
            try:
                reply = await upstream.send(
                    "GET", url + (f"&pageToken={quote(token, safe='')}" if token else ""),
                    headers=list(_ACCEPT_JSON), body=None, idempotent=True)
                data = await reply.read()
            except ApiError as exc:
                raise ListingIncomplete(f"could not list {project}/{location}: {exc.message}", jobs) from exc
            if reply.status != 200:
                raise ListingIncomplete(f"the list of {project}/{location} answered {reply.status}", jobs)
            try:
                page = json.loads(data)
            except ValueError:
                raise ListingIncomplete(f"the list of {project}/{location} was not JSON", jobs) from None
            items = page.get("batchPredictionJobs", []) if isinstance(page, dict) else []
            jobs += [job for item in items if (job := _upstream_job(item)) is not None]
            token = page.get("nextPageToken") if isinstance(page, dict) else None
            if not isinstance(token, str) or not token:
                return jobs


def _upstream_job(item: Any) -> UpstreamJob | None:
    """A listed job, or None when it is not one (no object, or a name that is not a job's)."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    name = JobName.parse(item["name"])
    if name is None:
        return None
    labels = item["labels"] if isinstance(item.get("labels"), dict) else {}
    return UpstreamJob(name=item["name"], api_version=LIST_API_VERSION, project=name.project,
                       location=name.location, job_id=name.job_id, team_label=str(labels.get(TEAM_LABEL, "")),
                       key_id=str(labels.get(KEY_LABEL, "")), created=parse_rfc3339(item.get("createTime")),
                       resource=item, batch_id=str(labels.get(BATCH_LABEL, "")))
