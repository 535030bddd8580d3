"""An OpenAI/Azure Batch object in the shape the ledger records every provider's jobs in (`proxy.ledger.jobs`):

    name            {provider}/{deployment}/batches/{upstream id}   (`names.BatchName`); jobId: its short form
    state           the ledger's JobState (`states.job_state`)
    createTime, startTime, endTime, updateTime   from created_at, in_progress_at, the end's *_at (RFC 3339)
    completionStats {successfulCount, failedCount} from request_counts
    error           {message} of the batch's first error, when it failed
    labels          the batch's metadata (the proxy's vbp-team / vbp-key / vbp-batch labels)
    outputInfo      {gcsOutputDirectory}: the folder its output and error files were mirrored into, once it ended
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from proxy.providers.openai_batch.names import BatchName
from proxy.providers.openai_batch.states import job_state

_END_FIELDS = ("completed_at", "failed_at", "cancelled_at", "expired_at")


def field_of(item: dict[str, Any], key: str) -> dict[str, Any]:
    """`item[key]` when it is an object, else {} (a reply missing a field, or holding null there)."""
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def job_reply(batch: dict[str, Any], *, provider: str, deployment: str, model: str = "",
              output_directory: str | None = None) -> dict[str, Any]:
    """The batch as the ledger records a job (see the module docstring)."""
    name = BatchName(provider, deployment, str(batch.get("id", "")))
    counts = field_of(batch, "request_counts")
    failed = _count(counts.get("failed"))
    state = job_state(batch.get("status"), failed_requests=failed)
    metadata = field_of(batch, "metadata")
    end = next((batch[field] for field in _END_FIELDS if batch.get(field)), None)
    reply: dict[str, Any] = {
        "name": str(name), "jobId": name.job_id, "state": state.name if state is not None else None,
        "createTime": _time(batch.get("created_at")), "startTime": _time(batch.get("in_progress_at")),
        "endTime": _time(end), "updateTime": _time(end or batch.get("in_progress_at") or batch.get("created_at")),
        "completionStats": {"successfulCount": _count(counts.get("completed")), "failedCount": failed},
        "labels": dict(metadata), "model": str(model or batch.get("model") or ""),
        "displayName": str(metadata.get("vbp-batch", "")),
    }
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        reply["error"] = {"code": first.get("code"), "message": str(first.get("message") or first.get("code"))}
    if output_directory:
        reply["outputInfo"] = {"gcsOutputDirectory": output_directory}
    return reply
