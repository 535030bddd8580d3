"""Time in one place: aware UTC datetimes, and RFC 3339 as Vertex writes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d+)")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(value: object) -> datetime | None:
    """Parse `2026-09-02T20:06:30.166279Z` (any number of fraction digits); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_rfc3339(value: datetime) -> str:
    """Vertex's form: UTC, microseconds, a `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
