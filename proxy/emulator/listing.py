"""`batchPredictionJobs.list`: filtering, cursor paging and the read mask."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from proxy.emulator.jobs import Job
from proxy.emulator.predictions import rfc3339
from proxy.emulator.validation import JOB_FIELDS, camel
from proxy.errors import InvalidArgument
from proxy.providers.vertex import filters

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _cursor(job: Job) -> tuple[str, str]:
    # Fixed-width createTime and 19-digit ids sort as text in the same order as in time.
    return rfc3339(job.create_time), job.job_id


def encode_page_token(job: Job) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(_cursor(job))).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, str]:
    """The cursor a page token carries; InvalidArgument when the token is not one of ours."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidArgument("Invalid page token.") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
        raise InvalidArgument("Invalid page token.")
    return value[0], value[1]


def page_size(raw: str | None) -> int:
    if raw in (None, ""):
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise InvalidArgument(f"Invalid value for pageSize: {raw!r}.") from None
    if size < 0:
        raise InvalidArgument("pageSize must not be negative.")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def parse_filter(text: str | None) -> filters.Node | None:
    try:
        return filters.parse(text or "")
    except filters.FilterError as exc:
        raise InvalidArgument(f"Invalid filter: {exc}") from None


def parse_read_mask(raw: str | None) -> list[tuple[str, ...]] | None:
    """The read mask's paths (camelCase parts); None when absent. Unknown fields are InvalidArgument."""
    if not raw:
        return None
    paths = []
    for path in raw.split(","):
        parts = tuple(camel(part.strip()) for part in path.strip().split("."))
        if not parts[0] or parts[0] not in JOB_FIELDS | {"model"}:
            raise InvalidArgument(f"Invalid field mask path {path.strip()!r} for BatchPredictionJob.")
        paths.append(parts)
    return paths


def apply_read_mask(job: Mapping[str, Any], paths: Sequence[tuple[str, ...]] | None) -> dict[str, Any]:
    """Only the masked fields of a job (all of them without a mask)."""
    if paths is None:
        return dict(job)
    masked: dict[str, Any] = {}
    for path in paths:
        source: Any = job
        target = masked
        for depth, part in enumerate(path):
            if not isinstance(source, Mapping) or part not in source:
                break
            source = source[part]
            if depth == len(path) - 1:
                target[part] = source
            else:
                target = target.setdefault(part, {})
    return masked


def select_page(jobs: Iterable[Job], *, token: str | None, size: int,
                matches: Callable[[Job], bool] = lambda _job: True) -> tuple[list[Job], str | None]:
    """One page of the jobs (newest first) that `matches` takes, and the token of the next page if more do.

    Jobs are tested only until the page is full and one more match is found: a list costs its page, not every job
    of the location (a long soak makes thousands, and lists them many times a second).
    """
    cursor = decode_page_token(token) if token else None
    page: list[Job] = []
    for job in jobs:
        if cursor is not None and not _cursor(job) < cursor:
            continue
        if not matches(job):
            continue
        if len(page) == size:
            return page, encode_page_token(page[-1])
        page.append(job)
    return page, None
