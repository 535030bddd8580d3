"""An OpenAI/Azure batch's `status`, in the ledger's one vocabulary of job states (`JobState`), so that the poller,
metering, budgets, webhooks and the door's views read every provider's jobs alike.

    validating                 JOB_STATE_PENDING
    in_progress, finalizing    JOB_STATE_RUNNING
    completed                  JOB_STATE_SUCCEEDED (JOB_STATE_PARTIALLY_SUCCEEDED when some requests failed)
    failed                     JOB_STATE_FAILED
    cancelling / cancelled     JOB_STATE_CANCELLING / JOB_STATE_CANCELLED
    expired                    JOB_STATE_EXPIRED

Azure's older replies spell statuses capitalised ("Validating"): they are read case-blind.
"""

from __future__ import annotations

from proxy.providers.vertex.states import JobState

S = JobState
_STATES = {
    "validating": S.JOB_STATE_PENDING, "in_progress": S.JOB_STATE_RUNNING, "finalizing": S.JOB_STATE_RUNNING,
    "completed": S.JOB_STATE_SUCCEEDED, "failed": S.JOB_STATE_FAILED, "cancelling": S.JOB_STATE_CANCELLING,
    "cancelled": S.JOB_STATE_CANCELLED, "expired": S.JOB_STATE_EXPIRED,
}
# The ledger state -> the status people know from OpenAI (`state_name`).
STATUS_NAMES = {
    S.JOB_STATE_PENDING: "validating", S.JOB_STATE_RUNNING: "in_progress", S.JOB_STATE_SUCCEEDED: "completed",
    S.JOB_STATE_PARTIALLY_SUCCEEDED: "completed", S.JOB_STATE_FAILED: "failed",
    S.JOB_STATE_CANCELLING: "cancelling", S.JOB_STATE_CANCELLED: "cancelled", S.JOB_STATE_EXPIRED: "expired",
}


def job_state(status: object, *, failed_requests: int = 0) -> JobState | None:
    """The ledger's state for a batch status (None when it is not one)."""
    state = _STATES.get(status.lower()) if isinstance(status, str) else None
    if state == S.JOB_STATE_SUCCEEDED and failed_requests > 0:
        return S.JOB_STATE_PARTIALLY_SUCCEEDED
    return state
