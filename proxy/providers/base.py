"""The provider seam: what metering, the poller and reconciliation ask of an upstream batch provider.

A provider answers five things, and nothing else crosses the seam:
- `name`: the ledger's `jobs.provider` and the pricing tables' `provider` (`"vertex"`);
- `read_job`: a job as the provider shows it now (the poller records its state and where its outputs are), and
  `ended` / `state_name`: what a recorded state means;
- `output_objects`: where a finished job's output files are, or why there is nothing (yet) to read;
- `row_reader`: the reader of its output format, which turns each output row into provider-neutral usage
  (`RowUsage`) and adds it to a job's totals, and `row_usage`: the same for one row (per-line exports);
- `list_labelled_jobs`: the jobs upstream that carry the proxy's labels (reconciliation adopts those the ledger
  lacks).
Usage kinds are the provider's own counts mapped onto one vocabulary: input (cached input included), cached
input, output, reasoning, tool-use input, audio input and cached audio input (the modality with its own price),
embedding tokens and embedding characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from google.cloud import storage

    from proxy.ledger.models import Job
    from proxy.metering.totals import JobTotals
    from proxy.upstream import Upstream

# Kinds of output row (`RowUsage.kind`): billed, counted free, counted apart (no usage), unreadable.
SUCCEEDED = "succeeded"
FAILED = "failed"
NO_USAGE = "no_usage"
MALFORMED = "malformed"
KINDS = (SUCCEEDED, FAILED, NO_USAGE, MALFORMED)


class RowUsage(msgspec.Struct, frozen=True, gc=False):
    """What one output row reports, in provider-neutral kinds. Counts are 0 when absent; `error` says why a row
    is malformed.

    `input` INCLUDES `cached_input`; `audio_input` and `audio_cached_input` are the audio parts of `input` and
    `cached_input`; `reasoning` is billed as output, `tool_use_input` as input. `embedding_characters` counts
    Unicode code points (whitespace included), the unit of character-priced embedding models.
    """

    kind: str
    input: int = 0
    cached_input: int = 0
    output: int = 0
    reasoning: int = 0
    tool_use_input: int = 0
    audio_input: int = 0
    audio_cached_input: int = 0
    embedding_tokens: int = 0
    embedding_characters: int = 0
    model_version: str | None = None
    error: str | None = None


@dataclass(frozen=True, order=True)
class OutputObject:
    """One final output file in Cloud Storage, pinned to the generation that was listed."""

    bucket: str
    name: str
    generation: int
    size: int
    # Content-Encoding as stored: a gzip object is served decompressed (transcoded), so it is read whole.
    encoding: str = field(default="", compare=False)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


class OutputReadError(Exception):
    """An output could not be listed or read completely; the caller retries the whole job later."""


class OutputMissing(OutputReadError):
    """The bucket, or the listed generation of an object, no longer exists."""


class BucketMissing(OutputMissing):
    """The output bucket does not exist: the job could not write there, or its outputs were deleted with it.

    Unlike a replaced object (listing again finds the new generation), no retry can ever read this job's outputs.
    """

    def __init__(self, bucket: str, message: str) -> None:
        super().__init__(message)
        self.bucket = bucket


class NotReady(Exception):
    """The job's outputs are not there (yet): try again later. `refetch`: ask the provider for the job again first."""

    def __init__(self, message: str, *, refetch: bool = False) -> None:
        super().__init__(message)
        self.refetch = refetch


class NoOutput(Exception):
    """The job ended without any output to read: it is settled with 0 lines, nothing billed, and this reason."""


class Unreadable(Exception):
    """The job's outputs cannot be read, now or later: it is settled as unmeterable, with this reason."""


class RowReader(Protocol):
    """Feeds the rows of one stream of output bytes into a job's totals (see `BatchProvider.row_reader`).

    `rows` counts the non-blank lines seen; `malformed_rows` keeps (row number in this stream, reason) of the
    first malformed ones.
    """

    rows: int
    malformed_rows: list[tuple[int, str]]

    def feed(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class UpstreamJob:
    """A job listed upstream with the proxy's labels: who it says it belongs to, and its resource as listed."""

    name: str
    api_version: str
    project: str
    location: str
    job_id: str
    team_label: str
    key_id: str
    created: datetime | None
    resource: Mapping[str, Any]
    batch_id: str = ""  # the OpenAI-door batch the job runs, from its label ("" for a native job)
    deployment: str = ""  # the catalog deployment the job runs on ("" for Vertex jobs found by project/location)


class ListingIncomplete(Exception):
    """A listing that stopped before its end (the provider said no): `jobs` holds the pages it did get, so the
    caller may adopt those but must not take a missing job for an absent one."""

    def __init__(self, message: str, jobs: list[UpstreamJob]) -> None:
        super().__init__(message)
        self.jobs = jobs


class BatchProvider(Protocol):
    """One upstream batch API: what metering, the poller and reconciliation ask of it."""

    name: str

    def ended(self, state: str) -> bool:
        """Whether a job state the ledger recorded is final (the job will not run any more)."""
        ...

    def state_name(self, state: str) -> str:
        """A recorded job state as people read it (`SUCCEEDED`)."""
        ...

    async def read_job(self, upstream: Upstream, *, name: str, api_version: str,
                       location: str) -> dict[str, object] | None:
        """The job as the provider shows it now, or None (logged) when it could not be read."""
        ...

    def output_objects(self, storage_client: storage.Client, job: Job) -> list[OutputObject]:
        """The finished job's final output files; raises NotReady, NoOutput, Unreadable or OutputReadError."""
        ...

    def row_reader(self, totals: JobTotals) -> RowReader:
        """A reader of this provider's output rows that adds each one's usage to `totals`."""
        ...

    def row_usage(self, line: bytes) -> RowUsage:
        """The usage of one output row (one line, without its newline), as its row reader counts it; never raises.
        Per-line cost exports read rows one by one through this."""
        ...

    def model_id(self, model: str) -> str:
        """The bare model id of any of the provider's model names (the pricing tables' key)."""
        ...

    def served(self, project: str, location: str) -> bool:
        """Whether a project/location pair is one this provider can be listed in."""
        ...

    def label_value(self, team: str) -> str:
        """A team name as the provider's team label holds it (labels allow fewer characters than names)."""
        ...

    async def list_labelled_jobs(self, upstream: Upstream, *, project: str, location: str) -> list[UpstreamJob]:
        """Every job of the pair that carries the proxy's team label, all pages; ListingIncomplete when it says no."""
        ...
