"""The `filter` of `batchPredictionJobs.list`: a tokenizer, a recursive-descent parser, an evaluator and a renderer.

The grammar is the subset of Google's AIP-160 filtering language that Vertex documents for batch jobs:

    filter     := expression EOF
    expression := sequence { "AND" sequence }          # AND binds loosest (AIP-160)
    sequence   := factor                               # juxtaposition (implicit AND) is refused
    factor     := term { "OR" term }                   # OR binds tighter than AND (AIP-160)
    term       := ( "NOT" | "-" ) term | "(" expression ")" | comparison
    comparison := field op value
    field      := display_name | state | create_time | start_time | end_time | update_time | labels.KEY
    op         := "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"
    value      := "double-quoted" | 'single-quoted' | bare-word | "*"

`render` prints a canonical, fully parenthesised filter that parses back to the same tree, so the proxy can
AND a clause of its own onto a caller's filter without the caller's text changing its meaning. Anything
outside the grammar raises `FilterError` (a `ValueError`), never another exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proxy.providers.vertex.states import parse_state

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 32

TIME_FIELDS = {"create_time": "createTime", "start_time": "startTime", "end_time": "endTime",
               "update_time": "updateTime"}
STRING_FIELDS = {"display_name": "displayName"}
ORDER_OPS = ("<", "<=", ">", ">=")


class FilterError(ValueError):
    """A filter the grammar does not accept; the message says where and why."""


@dataclass(frozen=True)
class Compare:
    """`field op value`; `field` is the dotted path split (`("labels", "team")`)."""

    field: tuple[str, ...]
    op: str
    value: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Compare | Not | And | Or


# --- tokenizer ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "op", "(", ")", "-", "AND", "OR", "NOT", "eof"
    text: str
    pos: int


_OP_RE = re.compile(r"!=|<=|>=|=|<|>|:")
_WORD_RE = re.compile(r"[\w.*][\w.*\-]*")
_KEYWORDS = {"AND", "OR", "NOT"}


def tokenize(text: str) -> list[_Token]:
    """Split a filter into tokens; unbalanced quotes and stray characters raise FilterError."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char, i))
            i += 1
        elif char == "-":
            tokens.append(_Token("-", char, i))
            i += 1
        elif char in "\"'":
            value, i = _read_string(text, i)
            tokens.append(_Token("string", value, i))
        elif (match := _OP_RE.match(text, i)) is not None:
            tokens.append(_Token("op", match.group(), i))
            i = match.end()
        elif (match := _WORD_RE.match(text, i)) is not None:
            word = match.group()
            tokens.append(_Token(word if word in _KEYWORDS else "word", word, i))
            i = match.end()
        else:
            raise FilterError(f"unexpected character {char!r} at position {i}")
    tokens.append(_Token("eof", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise FilterError(f"unterminated string starting at position {start}")


# --- parser ------------------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def take(self, kind: str) -> _Token:
        token = self.current
        if token.kind != kind:
            raise FilterError(f"expected {kind} at position {token.pos}, found {_describe(token)}")
        self.index += 1
        return token

    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"filter nests deeper than {MAX_DEPTH} levels")
        node = self.factor()
        while self.current.kind == "AND":
            self.index += 1
            node = And(node, self.factor())
        if self.current.kind not in ("eof", ")"):
            raise FilterError(f"expected AND, OR or the end at position {self.current.pos}, "
                              f"found {_describe(self.current)} (join conditions with AND)")
        self.depth -= 1
        return node

    def factor(self) -> Node:
        node = self.term()
        while self.current.kind == "OR":
            self.index += 1
            node = Or(node, self.term())
        return node

    def term(self) -> Node:
        token = self.current
        if token.kind in ("NOT", "-"):
            self.index += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterError(f"filter nests deeper than {MAX_DEPTH} levels")
            negated = Not(self.term())
            self.depth -= 1
            return negated
        if token.kind == "(":
            self.index += 1
            inner = self.expression()
            self.take(")")
            return inner
        if token.kind == "word":
            return self.comparison()
        raise FilterError(f"expected a condition at position {token.pos}, found {_describe(token)}")

    def comparison(self) -> Compare:
        field_token = self.take("word")
        field = _parse_field(field_token)
        op_token = self.current
        if op_token.kind != "op":
            raise FilterError(f"expected an operator after {field_token.text!r} at position {op_token.pos}, "
                              f"found {_describe(op_token)}")
        self.index += 1
        value_token = self.current
        if value_token.kind not in ("string", "word"):
            raise FilterError(f"expected a value after {field_token.text}{op_token.text} at position "
                              f"{value_token.pos}, found {_describe(value_token)}")
        self.index += 1
        node = Compare(field, op_token.text, value_token.text)
        _check(node, value_token)
        return node


def _describe(token: _Token) -> str:
    return "the end of the filter" if token.kind == "eof" else repr(token.text)


def _parse_field(token: _Token) -> tuple[str, ...]:
    parts = tuple(token.text.split("."))
    if "*" in token.text or any(part == "" for part in parts):
        raise FilterError(f"invalid field {token.text!r} at position {token.pos}")
    if parts[0] == "labels":
        if len(parts) != 2:
            raise FilterError(f"a label filter names one key: labels.KEY (got {token.text!r})")
        return parts
    if len(parts) == 1 and (parts[0] in TIME_FIELDS or parts[0] in STRING_FIELDS or parts[0] == "state"):
        return parts
    raise FilterError(f"unknown filter field {token.text!r}; known: state, display_name, create_time, "
                      "start_time, end_time, update_time, labels.KEY")


def _check(node: Compare, token: _Token) -> None:
    """Refuse operators and values a field cannot take, at parse time, so evaluation never fails."""
    name = node.field[0]
    if name in TIME_FIELDS:
        if node.op == ":":
            raise FilterError(f"{name} takes =, !=, <, <=, > or >=, not ':'")
        parse_timestamp(node.value)
        return
    if node.op in ORDER_OPS:
        raise FilterError(f"{'.'.join(node.field)} takes =, != or ':', not {node.op!r}")
    if name == "state":
        state = parse_state(node.value)
        if state is None or node.value.isdigit():
            raise FilterError(f"unknown job state {node.value!r} at position {token.pos}")


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp (`2026-05-18T00:00:00Z`, fractions and offsets allowed) as an aware datetime."""
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise FilterError(f"not an RFC 3339 timestamp: {value!r}") from None
    if stamp.tzinfo is None or "T" not in value.upper():
        raise FilterError(f"timestamp {value!r} needs a date, a time and a zone (e.g. 2026-05-18T00:00:00Z)")
    return stamp


def parse(text: str) -> Node | None:
    """Parse a filter; an empty or blank filter is None (everything matches)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter longer than {MAX_FILTER_LENGTH} characters")
    tokens = tokenize(text)
    if tokens[0].kind == "eof":
        return None
    parser = _Parser(tokens)
    node = parser.expression()
    if parser.current.kind != "eof":
        raise FilterError(f"unexpected {_describe(parser.current)} at position {parser.current.pos}")
    return node


# --- evaluation --------------------------------------------------------------------------------------------

def evaluate(node: Node | None, job: Mapping[str, Any]) -> bool:
    """Whether a job (its REST JSON, state as a name or a number) matches the filter."""
    if node is None:
        return True
    if isinstance(node, And):
        return evaluate(node.left, job) and evaluate(node.right, job)
    if isinstance(node, Or):
        return evaluate(node.left, job) or evaluate(node.right, job)
    if isinstance(node, Not):
        return not evaluate(node.operand, job)
    return _compare(node, job)


def _compare(node: Compare, job: Mapping[str, Any]) -> bool:
    name = node.field[0]
    if name == "state":
        equal = parse_state(job.get("state")) == parse_state(node.value)
        return not equal if node.op == "!=" else equal
    if name in TIME_FIELDS:
        raw = job.get(TIME_FIELDS[name])
        if not isinstance(raw, str):
            return False  # a job that has not started has no start_time: no comparison holds
        return _order(parse_timestamp(raw), node.op, parse_timestamp(node.value))
    if name == "labels":
        labels = job.get("labels") or {}
        value = labels.get(node.field[1]) if isinstance(labels, Mapping) else None
        if node.op == ":" and node.value == "*":
            return value is not None
        if value is None:
            return node.op == "!="
        return _match_text(str(value), node.op, node.value)
    raw = job.get(STRING_FIELDS[name])
    return _match_text(raw if isinstance(raw, str) else "", node.op, node.value)


def _match_text(actual: str, op: str, pattern: str) -> bool:
    # AIP-160: `*` in a string value is a wildcard for both `=` and `:`.
    matched = re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), actual, re.DOTALL) is not None
    return not matched if op == "!=" else matched


def _order(left: datetime, op: str, right: datetime) -> bool:
    return {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right}[op]


# --- rendering ---------------------------------------------------------------------------------------------

def render(node: Node | None) -> str:
    """A canonical filter string for a tree: every operation in parentheses, every value quoted."""
    if node is None:
        return ""
    if isinstance(node, And):
        return f"({render(node.left)} AND {render(node.right)})"
    if isinstance(node, Or):
        return f"({render(node.left)} OR {render(node.right)})"
    if isinstance(node, Not):
        return f"(NOT {render(node.operand)})"
    field = ".".join(node.field)
    if node.field[0] == "labels" and node.op == ":" and node.value == "*":
        return f"({field}:*)"
    return f"({field}{node.op}{quote(node.value)})"


def quote(value: str) -> str:
    """A double-quoted filter string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def and_all(*nodes: Node | None) -> Node | None:
    """The conjunction of the given trees (None ones skipped), e.g. a caller's filter AND a team clause."""
    result: Node | None = None
    for node in nodes:
        if node is not None:
            result = node if result is None else And(result, node)
    return result


__all__ = ["And", "Compare", "FilterError", "Node", "Not", "Or", "and_all", "evaluate", "parse",
           "quote", "render", "tokenize"]
