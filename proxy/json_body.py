"""Parsing a JSON request body, for every route that takes one: strict, bounded, and never a 500.

Python's `json` recurses once per nesting level and raises RecursionError (a 500, with a traceback per request)
on a body nested a few thousand deep, and it accepts `NaN`, `Infinity` and numbers that overflow to infinity,
none of which is JSON. So, before `json.loads`:
- the body must be UTF-8 (Google's APIs take nothing else);
- its nesting depth is measured without recursion, and more than MAX_DEPTH levels is refused;
then `NaN`/`Infinity`/`-Infinity` and floats that overflow (`1e999`) are refused. All of it is a 400
INVALID_ARGUMENT naming the problem, and nothing is logged: a bad body is the caller's mistake, not news.
"""

from __future__ import annotations

import json
import math
import re

from proxy.errors import InvalidArgument

MAX_DEPTH = 64  # `{"a": [1]}` is 2 deep; Vertex's own resources nest a dozen at most

_ESCAPE = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*"')
_OPEN, _CLOSE = b"(", b")"
# Brackets of either kind become `(` / `)`; every other byte is dropped.
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def nesting_too_deep(data: bytes, max_depth: int) -> bool:
    """True when the brackets outside strings nest more than `max_depth` deep, or do not balance.

    Linear and recursion-free: escapes are dropped (which, inside strings, is exact, and outside them is an
    error `json` stops at anyway), then whole strings, then everything but brackets; each pass of removing
    adjacent `()` pairs then peels one level off every innermost pair, so a document at most `max_depth` deep
    is empty after `max_depth` passes. What is left is a pair nested deeper, or brackets that never balance
    (which `json` would follow, recursing, to the end of the body before failing).
    """
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data)).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        peeled = brackets.replace(_OPEN + _CLOSE, b"")
        if len(peeled) == len(brackets):
            break  # nothing pairs up any more: unbalanced
        brackets = peeled
    return bool(brackets)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def parse_json_body(data: bytes, *, max_depth: int = MAX_DEPTH, empty: object = None) -> object:
    """The JSON value of a request body (`empty` for a blank one), or InvalidArgument saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("Invalid JSON payload received: the body is not UTF-8.") from None
    if not text.strip():
        return empty
    if nesting_too_deep(data, max_depth):
        raise InvalidArgument(f"Invalid JSON payload received: brackets that do not balance, or nesting deeper "
                              f"than {max_depth} levels.")
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except ValueError as exc:  # JSONDecodeError, the constants and overflows above, and over-long integers
        raise InvalidArgument(f"Invalid JSON payload received: {exc}.") from None
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so that it could never be a 500 either
        raise InvalidArgument(f"Invalid JSON payload received: nesting deeper than {max_depth} levels.") from None
