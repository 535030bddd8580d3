"""The key of each output row of an OpenAI-door batch in a per-line cost export: the caller's `custom_id`.

A row finds its caller line the way the output conversion finds it (`line_index`): a chat row by the line label
in its echoed request, else by the sibling `custom_id` (which Vertex may not echo); an embedding row by the digest
of its echoed instance's content, the first input with that content not claimed by an earlier row (inputs of the
same text on several lines are interchangeable: they cost the same). So the keys come out whether or not Vertex
echoes sibling keys. A row whose line cannot be found keys as a native row does (`request_key`).

The index is the batch's own copy beside its output (`bucket.batch_folder(...)/index.bin`).
"""

from __future__ import annotations

import logging

import msgspec
from google.cloud import storage

from proxy.ledger.models import Job
from proxy.openai_door.bucket import INDEX, FilesBucket
from proxy.openai_door.line_index import LineIndex, content_digest
from proxy.openai_door.vertex_rows import label_line, locate
from proxy.reports.line_keys import KeyReader, custom_id_key, request_key

log = logging.getLogger(__name__)


class _Request(msgspec.Struct):
    labels: dict[str, str] | None = None


class _Instance(msgspec.Struct):
    content: str | None = None


class _Echo(msgspec.Struct):
    # Only what finds the line; the rest of the row is skipped as JSON.
    custom_id: str | None = None
    request: _Request | None = None
    instance: _Instance | None = None


_decode = msgspec.json.Decoder(_Echo).decode


class BatchLineKeys:
    """A `KeyReader` for one door batch's rows, in the order the export reads them (it remembers claimed inputs)."""

    def __init__(self, index: LineIndex) -> None:
        self.index = index
        self._claimed = bytearray(index.inputs if index.kind == "embeddings" else 0)

    def __call__(self, raw: bytes) -> str | None:
        try:
            echo = _decode(raw)
            labelled = label_line(echo.request.labels) if echo.request is not None else None
            sibling = echo.custom_id
            content = echo.instance.content if echo.instance is not None else None
        except msgspec.DecodeError:  # a malformed row: located from a generic parse, as the conversion does
            labelled, sibling, content = locate(raw)
        line = self._embedding_line(content) if self.index.kind == "embeddings" else self._chat_line(labelled,
                                                                                                       sibling)
        return self.index.custom_id(line) if line is not None else request_key(raw)

    def _chat_line(self, labelled: int | None, sibling: str | None) -> int | None:
        if labelled is not None and 1 <= labelled <= len(self.index):
            return labelled
        return self.index.line_of(sibling) if sibling is not None else None

    def _embedding_line(self, content: str | None) -> int | None:
        if content is None:
            return None
        candidates = self.index.inputs_with_digest(content_digest(content))
        if not candidates:
            return None
        at = next((at for at in candidates if not self._claimed[at]), candidates[0])
        self._claimed[at] = 1
        return self.index.line_of_input(at)


def batch_key_reader(client: storage.Client, *, files_bucket: str | None, job: Job) -> KeyReader | None:
    """The custom_id reader of a door batch's job (its index read from the bucket); None for a native job.

    Without VBP_FILES_BUCKET or the batch's index (removed by hand), the rows' sibling `custom_id` is all there is
    (`custom_id_key`)."""
    if not job.batch_id:
        return None
    if not files_bucket:
        return custom_id_key
    bucket = FilesBucket(files_bucket, client_factory=lambda: client)
    path = bucket.batch_folder(job.team, job.batch_id) + INDEX
    try:
        index = LineIndex.from_bytes(bucket.read(path))
    except Exception:  # google.api_core.exceptions.NotFound, or a damaged index: fall back, say so
        log.warning("the line index of batch %s (%s) cannot be read; keying its lines by the echoed custom_id",
                    job.batch_id, bucket.uri(path), exc_info=True)
        return custom_id_key
    return BatchLineKeys(index)
