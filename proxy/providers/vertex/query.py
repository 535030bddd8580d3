"""The query string of a passthrough call: parsed strictly, checked against what Vertex defines, re-encoded.

Only the parameters Vertex defines for an operation cross the proxy; Google's system parameters (`key`,
`access_token`, `quotaUser`, `userProject`, `fields`, `callback`, ...) would let a caller act as someone else,
bill someone else or reshape a reply the proxy reads, so they are refused, and so is anything unknown or
spelled differently (`Filter`, `$filter`, `filter%00`, `filter ` ...). Rules:
- the raw query must be ASCII; names and values are percent-decoded once, `+` being a space (as Google reads
  them); a malformed escape or bytes that are not UTF-8 are refused;
- every name must be one the operation accepts, exactly; a parameter given twice is refused (which copy would
  Vertex take?);
- `$alt` (sent by google-cloud-aiplatform on every call) may only ask for JSON: `json` or `json;enum-encoding=int`;
- what goes upstream is re-encoded from the checked pairs, so it means exactly what was checked.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote_plus

from proxy.errors import InvalidArgument

ALT = "$alt"
ALT_VALUES = frozenset({"json", "json;enum-encoding=int"})
PARAMETERS: dict[str, frozenset[str]] = {
    "list": frozenset({"pageSize", "pageToken", "filter", "readMask", ALT}),
    "create": frozenset({ALT}),
    "get": frozenset({ALT}),
    "cancel": frozenset({ALT}),
    "delete": frozenset({ALT}),
}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SHOWN_NAMES, _SHOWN_CHARS = 10, 40


def _decode(text: str) -> str:
    if _BAD_ESCAPE.search(text):
        raise InvalidArgument("The query string has a malformed percent-escape.")
    try:
        return unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("The query string is not UTF-8 once decoded.") from None


def _shown(name: str) -> str:
    return json.dumps(name[:_SHOWN_CHARS] + ("..." if len(name) > _SHOWN_CHARS else ""))


def parse_query(query_string: bytes, *, operation: str) -> dict[str, str]:
    """The query's parameters, decoded, in the order given; InvalidArgument naming whatever is not allowed."""
    try:
        raw = query_string.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidArgument("The query string must be ASCII (percent-encode anything else).") from None
    allowed = PARAMETERS[operation]
    params: dict[str, str] = {}
    unknown: list[str] = []
    for item in raw.split("&") if raw else []:
        if not item:
            continue  # `a=1&&b=2`: an empty item carries nothing
        raw_name, _, raw_value = item.partition("=")
        name, value = _decode(raw_name), _decode(raw_value)
        if name not in allowed:
            unknown.append(name)
        elif name in params:
            raise InvalidArgument(f"The query parameter {_shown(name)} is given more than once.")
        else:
            params[name] = value
    if unknown:
        distinct = list(dict.fromkeys(unknown))
        names = ", ".join(_shown(name) for name in distinct[:_SHOWN_NAMES]) + (
            ", ..." if len(distinct) > _SHOWN_NAMES else "")
        raise InvalidArgument(f"Query parameter(s) not accepted by {operation}: {names}. It accepts: "
                              f"{', '.join(sorted(allowed))}.")
    if ALT in params and params[ALT] not in ALT_VALUES:
        raise InvalidArgument(f"{ALT} may only be {' or '.join(sorted(ALT_VALUES))}.")
    return params


def encode_query(params: dict[str, str]) -> str:
    """The query string to send upstream (every value percent-encoded; the names are the allowlist's own)."""
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
