"""Job states by name and by number: the REST API answers either, depending on `$alt=json;enum-encoding=int`."""

from __future__ import annotations

from enum import IntEnum


class JobState(IntEnum):
    """`google.cloud.aiplatform.v1.JobState`, numbered as in the proto."""

    JOB_STATE_UNSPECIFIED = 0
    JOB_STATE_QUEUED = 1
    JOB_STATE_PENDING = 2
    JOB_STATE_RUNNING = 3
    JOB_STATE_SUCCEEDED = 4
    JOB_STATE_FAILED = 5
    JOB_STATE_CANCELLING = 6
    JOB_STATE_CANCELLED = 7
    JOB_STATE_PAUSED = 8
    JOB_STATE_EXPIRED = 9
    JOB_STATE_UPDATING = 10
    JOB_STATE_PARTIALLY_SUCCEEDED = 11

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def progress(self) -> int:
        """Order of a state in a job's life, so that a recorded state never goes backwards."""
        return _PROGRESS[self]


TERMINAL_STATES = frozenset({
    JobState.JOB_STATE_SUCCEEDED,
    JobState.JOB_STATE_FAILED,
    JobState.JOB_STATE_CANCELLED,
    JobState.JOB_STATE_EXPIRED,
    JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
})

_PROGRESS = {
    JobState.JOB_STATE_UNSPECIFIED: 0,
    JobState.JOB_STATE_QUEUED: 1,
    JobState.JOB_STATE_PENDING: 2,
    JobState.JOB_STATE_PAUSED: 3,
    JobState.JOB_STATE_UPDATING: 3,
    JobState.JOB_STATE_RUNNING: 4,
    JobState.JOB_STATE_CANCELLING: 5,
    **{state: 6 for state in TERMINAL_STATES},
}


def parse_state(value: object) -> JobState | None:
    """Read a state given as a name (`"JOB_STATE_RUNNING"`), a number (`3`) or a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return JobState(value)
        except ValueError:
            return None
    if isinstance(value, str):
        if value.isascii() and value.isdigit():  # isdigit() alone takes '²', which int() refuses
            return parse_state(int(value))
        try:
            return JobState[value]
        except KeyError:
            return None
    return None


def advances(current: JobState | None, seen: JobState) -> bool:
    """True when `seen` is news: later in a job's life than `current` (terminal states are final)."""
    if current is None:
        return True
    if current.terminal:
        return False
    return seen.progress > current.progress
