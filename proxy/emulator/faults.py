"""Fault injection: what can go wrong on purpose, set in-process or with `POST /_emulator/faults`.

The JSON document (every key optional; setting faults replaces the previous set):

    {"latency": 0.2,                                  # seconds added before every API reply (all stand-ins)
     "errors": [{"status": 429, "count": 2, "method": "create"},   # the next 2 creates answer 429
                {"status": 503, "rate": 0.5}],                     # every 2nd call of any method answers 503
     "storage_stall": {"seconds": 5, "rate": 0.2},    # every 5th object read pauses 5 s after its first bytes
     "fail_jobs": true,                               # jobs end FAILED (error code 13), no output
     "failed_row_share": 0.25,                        # floor(n * share) rows become failed rows
     "large_output": {"rows": 1000000, "row_bytes": 1000},   # ignore the input, stream N generated rows
     "output_shards": 3,                              # predictions_00001.jsonl .. predictions_00003.jsonl
     "incremental_copy": true}                        # also write every other row under incremental_predictions/

`method` is one of create, get, list, cancel, delete, token (absent: every Vertex API method, not token).
A rule with a `path` (a prefix such as "/openai-api/" or "/azure/eastus/") applies to the calls under it instead,
on any API, so it reaches the OpenAI and Azure stand-ins too; there `method` names the same verbs (create:
upload or create; get: a file, its content or a batch; list; delete: a file; cancel: a batch) and the error
comes in that API's envelope. A rule without a path never touches the OpenAI and Azure stand-ins.
A `rate` rule fails the n-th matching call when floor(n * rate) > floor((n - 1) * rate), so it is exact and
deterministic; a `count` caps how many calls a rule fails. Job faults are captured when a job is created.

An error rule names a `status` (429, 500, 503, 504; 429 and 503 may carry `"retry_after": SECONDS`, sent as the
Retry-After header) or a network `fault` instead: `"timeout"` holds the reply `seconds` (then answers 504, as
Google's front end does when its own deadline passes), `"reset"` cuts the connection with a TCP RST and answers
nothing. With `"after_serving": true` the call is served first (a create makes its job) and only its reply is
lost or replaced: what a client sees when a timeout or a broken connection comes after the work was done.

`storage_stall` pauses object reads (media downloads) of the Cloud Storage front (`vbp emulator
--storage-faults`; without the front the fault is refused) in the middle of their bodies; a `count` may cap it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from proxy.errors import ApiError, DeadlineExceeded, Internal, InvalidArgument, ResourceExhausted, Unavailable

METHODS = ("create", "get", "list", "cancel", "delete", "token")
_ERRORS: dict[int, tuple[type[ApiError], str]] = {
    429: (ResourceExhausted, "Quota exceeded for aiplatform.googleapis.com/batch_prediction_requests "
                             "(injected by the emulator)."),
    500: (Internal, "Internal error encountered (injected by the emulator)."),
    503: (Unavailable, "The service is currently unavailable (injected by the emulator)."),
    504: (DeadlineExceeded, "The request deadline was exceeded (injected by the emulator)."),
}


NETWORK_FAULTS = ("timeout", "reset")
_RETRY_AFTER_STATUSES = (429, 503)


@dataclass(frozen=True)
class ErrorRule:
    """Answer some calls with an error status, a held reply or a cut connection instead of (or after) serving them."""

    status: int | None = None
    method: str | None = None
    rate: float | None = None
    count: int | None = None
    fault: str | None = None
    seconds: float | None = None
    retry_after: int | None = None
    after_serving: bool = False
    path: str | None = None

    def matches(self, method: str, path: str, *, google: bool) -> bool:
        """Whether this rule looks at a call (see the module docstring)."""
        if self.path is not None:
            return path.startswith(self.path) and (self.method is None or self.method == method)
        return google and (self.method == method or (self.method is None and method != "token"))


@dataclass(frozen=True)
class Injection:
    """What one call gets instead of its plain answer: an error to answer, a hold, or a reset."""

    error: ApiError | None = None
    hold_seconds: float = 0.0
    reset: bool = False
    after_serving: bool = False


@dataclass(frozen=True)
class StorageStall:
    """Pause the chosen object reads for `seconds` after their first bytes."""

    seconds: float
    rate: float = 1.0
    count: int | None = None


@dataclass(frozen=True)
class LargeOutput:
    """Generate `rows` rows of about `row_bytes` bytes each, without reading the input."""

    rows: int
    row_bytes: int


@dataclass(frozen=True)
class JobFaults:
    """The faults one job runs with."""

    fail: bool = False
    failed_row_share: float = 0.0
    large_output: LargeOutput | None = None
    output_shards: int = 1
    incremental_copy: bool = False


@dataclass(frozen=True)
class Faults:
    """A whole fault set, as the JSON document above."""

    latency: float = 0.0
    errors: tuple[ErrorRule, ...] = ()
    fail_jobs: bool = False
    failed_row_share: float = 0.0
    large_output: LargeOutput | None = None
    output_shards: int = 1
    incremental_copy: bool = False
    storage_stall: StorageStall | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        """Validate a fault document; a bad one raises InvalidArgument."""
        if not isinstance(data, Mapping):
            raise InvalidArgument("faults must be a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise InvalidArgument(f"unknown fault(s): {', '.join(sorted(unknown))}")
        latency = _number(data.get("latency", 0.0), "latency", 0.0, 600.0)
        share = _number(data.get("failed_row_share", 0.0), "failed_row_share", 0.0, 1.0)
        shards = data.get("output_shards", 1)
        if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 1000:
            raise InvalidArgument("output_shards must be an integer from 1 to 1000")
        large = data.get("large_output")
        large_output = None
        if large is not None:
            if not isinstance(large, Mapping) or set(large) != {"rows", "row_bytes"}:
                raise InvalidArgument('large_output must be {"rows": N, "row_bytes": B}')
            rows = _integer(large["rows"], "large_output.rows", 0)
            row_bytes = _integer(large["row_bytes"], "large_output.row_bytes", 200)
            large_output = LargeOutput(rows, row_bytes)
        rules = data.get("errors", ())
        if not isinstance(rules, list | tuple):
            raise InvalidArgument("errors must be a list of rules")
        return cls(latency=latency, errors=tuple(_rule(rule) for rule in rules),
                   fail_jobs=_flag(data.get("fail_jobs", False), "fail_jobs"), failed_row_share=share,
                   large_output=large_output, output_shards=shards,
                   incremental_copy=_flag(data.get("incremental_copy", False), "incremental_copy"),
                   storage_stall=_stall(data.get("storage_stall")))

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["errors"] = [{k: v for k, v in asdict(rule).items() if v is not None and v is not False}
                          for rule in self.errors]
        if self.storage_stall is not None:
            body["storage_stall"] = {k: v for k, v in asdict(self.storage_stall).items() if v is not None}
        return body

    def for_job(self) -> JobFaults:
        return JobFaults(fail=self.fail_jobs, failed_row_share=self.failed_row_share,
                         large_output=self.large_output, output_shards=self.output_shards,
                         incremental_copy=self.incremental_copy)


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def _integer(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidArgument(f"{name} must be an integer of at least {low}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be true or false")
    return value


_RULE_KEYS = {"status", "fault", "method", "rate", "count", "seconds", "retry_after", "after_serving", "path"}


def _rule(data: Any) -> ErrorRule:
    if not isinstance(data, Mapping) or not set(data) <= _RULE_KEYS:
        raise InvalidArgument('an error rule is {"status": 429|500|503|504 or "fault": "timeout"|"reset", '
                              '"method"?, "path"?, "rate"?, "count"?, "seconds"?, "retry_after"?, "after_serving"?}')
    status, fault = data.get("status"), data.get("fault")
    if (status is None) == (fault is None):
        raise InvalidArgument("an error rule names a status or a fault, not both")
    if status is not None and status not in _ERRORS:
        raise InvalidArgument(f"error status must be one of {sorted(_ERRORS)}")
    if fault is not None and fault not in NETWORK_FAULTS:
        raise InvalidArgument(f"fault must be one of {', '.join(NETWORK_FAULTS)}")
    seconds = data.get("seconds")
    if (seconds is not None) != (fault == "timeout"):
        raise InvalidArgument('a "timeout" fault needs "seconds" (and only it takes them)')
    retry_after = data.get("retry_after")
    if retry_after is not None and status not in _RETRY_AFTER_STATUSES:
        raise InvalidArgument("retry_after goes with status 429 or 503")
    method = data.get("method")
    if method is not None and method not in METHODS:
        raise InvalidArgument(f"error method must be one of {', '.join(METHODS)}")
    path = data.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise InvalidArgument('an error rule\'s "path" is a path prefix starting with "/"')
    rate = data.get("rate")
    count = data.get("count")
    if rate is None and count is None:
        raise InvalidArgument("an error rule needs a rate, a count or both")
    return ErrorRule(status=None if status is None else int(status), fault=fault, method=method,
                     rate=None if rate is None else _number(rate, "rate", 0.0, 1.0),
                     count=None if count is None else _integer(count, "count", 0),
                     seconds=None if seconds is None else _number(seconds, "seconds", 0.0, 600.0),
                     retry_after=None if retry_after is None else _integer(retry_after, "retry_after", 0),
                     after_serving=_flag(data.get("after_serving", False), "after_serving"), path=path)


def _stall(data: Any) -> StorageStall | None:
    if data is None:
        return None
    if not isinstance(data, Mapping) or "seconds" not in data or not set(data) <= {"seconds", "rate", "count"}:
        raise InvalidArgument('storage_stall is {"seconds": S, "rate"?: R, "count"?: N}')
    return StorageStall(seconds=_number(data["seconds"], "storage_stall.seconds", 0.0, 600.0),
                        rate=_number(data.get("rate", 1.0), "storage_stall.rate", 0.0, 1.0),
                        count=None if data.get("count") is None else _integer(data["count"], "storage_stall.count", 0))


def _picks(counter: _RuleCounter, rate: float | None, count: int | None) -> bool:
    """Whether the next call a rule sees is one it fails (exact shares, see the module docstring)."""
    if count is not None and counter.failed >= count:
        return False
    counter.seen += 1
    share = 1.0 if rate is None else rate
    if math.floor(counter.seen * share) > math.floor((counter.seen - 1) * share):
        counter.failed += 1
        return True
    return False


def _injection(rule: ErrorRule) -> Injection:
    if rule.fault == "reset":
        return Injection(reset=True, after_serving=rule.after_serving)
    if rule.fault == "timeout":
        error = None if rule.after_serving else DeadlineExceeded(_ERRORS[504][1])
        return Injection(error=error, hold_seconds=rule.seconds or 0.0, after_serving=rule.after_serving)
    assert rule.status is not None
    error_class, message = _ERRORS[rule.status]
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
    return Injection(error=error_class(message, headers=headers), after_serving=rule.after_serving)


@dataclass
class _RuleCounter:
    seen: int = 0
    failed: int = 0


@dataclass
class FaultState:
    """The live fault set of one emulator, with the counters its error rules need."""

    faults: Faults = field(default_factory=Faults)
    _counters: list[_RuleCounter] = field(default_factory=list)
    _stall_counter: _RuleCounter = field(default_factory=_RuleCounter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._counters = [_RuleCounter() for _ in faults.errors]
            self._stall_counter = _RuleCounter()

    def injected(self, method: str, *, path: str = "", google: bool = True) -> Injection | None:
        """What this call gets instead of its plain answer, if a rule picks it (`google`: a Vertex or token call)."""
        with self._lock:
            for rule, counter in zip(self.faults.errors, self._counters, strict=True):
                if not rule.matches(method, path, google=google):
                    continue
                if _picks(counter, rule.rate, rule.count):
                    return _injection(rule)
        return None

    def storage_stall(self) -> float:
        """Seconds the next object read pauses for (0: not this one)."""
        with self._lock:
            stall = self.faults.storage_stall
            if stall is None or not _picks(self._stall_counter, stall.rate, stall.count):
                return 0.0
            return stall.seconds
