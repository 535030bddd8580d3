"""Vertex batch output rows -> OpenAI batch output lines (the output file) or error lines (the error file).

`OutputLines(index, model=, batch_id=, which=, unanswered=)` takes the bytes of a job's output objects in chunks
(`feed`, any chunk boundaries, the objects one after the other, `end_object` after each) and answers the converted
lines; `close` answers the rest. One instance writes one file: `which="output"` the succeeded requests,
`which="error"` the failed ones and, at close, one line per request no row answered (`"response": null,
"error": {"code": <unanswered>, ...}`).

Finding a row's line (see `line_index`): chat rows by the line label in the echoed request, else by the sibling
`custom_id`; embedding rows by their instance's content. Decisions, the same in both instances as long as both
are fed the same objects in the same order (the door reads them in name order):
- the first row for a line answers it; a later row for the same line is dropped and counted (`repeated`);
- a row whose line cannot be found is dropped and counted (`unmatched`); its line, if any, ends unanswered;
- a row that cannot be read (not JSON, wrong types; `malformed`) but whose line can be found is a failed line:
  status 500, code `malformed_upstream_row`;
- a failed row (non-empty `status`) is a failed line with the embedded Google error's HTTP code and message;
- an embedding line with several inputs answers once all its inputs have rows (partial groups are buffered);
  one failed input fails the line (the first failure in input order is reported).
Every custom_id of the index thus appears exactly once across the two files.

Speed: chat rows of the common shape (text candidates, plain usage, the line label) are answered in runs by the
compiled fast path `_chatrows.answer_rows` (C, without the GIL; its contract is atop `_chatrows.c`): it stops at the
first row it cannot vouch for, which `chat_answer` (the reference) answers here. `compiled = False` on an instance
answers every row in Python, with the same bytes (tests/openai_door/test_chat_rows.py holds the two equal).

Memory: the index, a byte per line and per embedding input (answered or not), the unfinished last row of the
last chunk, and the partial embedding groups.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from proxy.openai_door.chat_response import chat_completion_json, unix_time
from proxy.openai_door.line_index import LineIndex, content_digest
from proxy.openai_door.vertex_rows import Row, decode_row, embedding_tokens, google_error, label_line, locate

answer_rows: Callable[..., Any] | None
decide_rows: Callable[..., Any] | None
try:
    from proxy.openai_door._chatrows import answer_rows, decide_rows
except ImportError:  # built without a C compiler: every row is answered in Python, with the same bytes, more slowly
    answer_rows = decide_rows = None

UNANSWERED_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
    "batch_failed": "This request was not executed because the batch failed.",
}
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               429: "rate_limit_error"}
_encode = msgspec.json.Encoder().encode
_blake2b = hashlib.blake2b
# An answered line as msgspec encodes `_ok_line`'s dict, around a body already encoded (the chat fast path).
_OK_LINE = b'{"id":"%s","custom_id":%s,"response":{"status_code":200,"request_id":%s,"body":%s},"error":null}\n'

# A chat row's (line or 0 when none is found, MALFORMED_* flags, its line in this instance's file or b"").
ChatAnswer = tuple[int, int, bytes]
MALFORMED_ROW = 1  # the row could not be read: counted as malformed whether or not its line takes it
MALFORMED_ANSWER = 2  # the row has neither response nor status: counted as malformed when its line takes it


class ChatAnswers:
    """Chat rows' answers in the rows' order, packed: each row's line (0: none found), MALFORMED_* flags and where
    its answer ends in the answers joined (a few large objects rather than one tuple per row)."""

    __slots__ = ("lines", "flags", "ends", "parts", "size")

    def __init__(self) -> None:
        self.lines = array("q")
        self.flags = bytearray()
        self.ends = array("q")
        self.parts: list[bytes] = []  # the answers, joined once by `packed`
        self.size = 0

    def packed(self) -> tuple[bytes, bytes, bytes, bytes]:
        """(lines, flags, ends, answers) as bytes: what `OutputLines.decide_all` takes."""
        lines, flags, ends, parts = self.pieces()
        return lines, flags, ends, b"".join(parts)

    def pieces(self) -> tuple[bytes, bytes, bytes, list[bytes]]:
        """`packed()` with the answers still in pieces (a worker writes them to its parent one after another)."""
        return self.lines.tobytes(), bytes(self.flags), self.ends.tobytes(), self.parts

    def add(self, answer: ChatAnswer) -> None:
        """One more row's answer."""
        line, flags, converted = answer
        self.lines.append(line)
        self.flags.append(flags)
        self.parts.append(converted)
        self.size += len(converted)
        self.ends.append(self.size)


# A decided embedding input: ("ok", values, tokens) or ("failed", status code, body).
_Slot = tuple[str, Any, Any]


def error_body(code: int, message: str, name: str | None) -> dict[str, Any]:
    """OpenAI's error envelope for a failed request of HTTP status `code` (`name`: Google's status name)."""
    kind = ERROR_TYPES.get(code, "invalid_request_error" if code < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": name.lower() if name else None}}


class OutputLines:
    """Vertex output rows (bytes, in chunks, any order, across several files) -> OpenAI batch output lines."""

    def __init__(self, index: LineIndex, *, model: str, batch_id: str, which: Literal["output", "error"],
                 unanswered: str) -> None:
        if which not in ("output", "error"):
            raise ValueError(f"which must be 'output' or 'error', not {which!r}")
        self.index = index
        self.model = model
        self.batch_id = batch_id
        self.which = which
        self.unanswered = unanswered
        self.embeddings = index.kind == "embeddings"
        self._lines = len(index)
        self._model_json = _encode(model)
        self.compiled = answer_rows is not None and not self.embeddings  # False: every row by the reference
        self._table: tuple[bytes, bytes] | None = None  # the index's custom_ids and their ends, for answer_rows
        self.answered = bytearray(len(index) + 1)  # 1 once a line has its answer (in either file)
        self.inputs_answered = bytearray(index.inputs if self.embeddings else 0)
        self.groups: dict[int, list[_Slot | None]] = {}  # embedding lines still waiting for some inputs
        self.unmatched = 0  # rows whose line could not be found
        self.repeated = 0  # rows for a line (or input) already answered
        self.malformed = 0  # rows that could not be read (answered as failed lines when their line is known)
        self._pending: list[bytes] = []
        self._closed = False

    # -- streaming -------------------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """The converted lines of every row that ends in this chunk."""
        if not self.embeddings:
            answers = ChatAnswers()
            self.pack_chat_answers(chunk, answers)
            return self.decide_all(*answers.packed())
        out: list[bytes] = []
        row = self._row
        for raw in self._split(chunk):
            row(raw, out)
        return b"".join(out)

    def pack_chat_answers(self, chunk: bytes, answers: ChatAnswers, *, last: bool = False) -> None:
        """`chat_answer` of every row that ends in this chunk (`last`: and of an unfinished last row), undecided, added
        to `answers`; the common rows by the compiled fast path."""
        pending = self._pending
        start = 0
        if pending:
            newline = chunk.find(b"\n")
            if newline < 0:
                pending.append(chunk)
                if last:
                    joined = b"".join(pending)
                    pending.clear()
                    self._pack(joined, 0, len(joined), answers)
                return
            pending.append(chunk[:newline + 1])
            joined = b"".join(pending)
            pending.clear()
            self._pack(joined, 0, len(joined), answers)
            start = newline + 1
        if last:
            stop = len(chunk)
        else:
            newline = chunk.rfind(b"\n", start)
            stop = newline + 1 if newline >= 0 else start
            if stop < len(chunk):
                pending.append(chunk[stop:])
        self._pack(chunk, start, stop, answers)

    def _pack(self, buf: bytes, pos: int, end: int, answers: ChatAnswers) -> None:
        """The rows of buf[pos:end] (the last one may lack its newline): runs of common rows by `answer_rows`, and
        each row it leaves by `chat_answer`."""
        while pos < end:
            if self.compiled:
                assert answer_rows is not None
                if self._table is None:
                    self._table = self.index.custom_id_table()
                ids, ends = self._table
                pos, lines, answer_ends, converted = answer_rows(
                    buf, pos, end, answers.size, ids, ends, self._model_json, self.batch_id.encode(),
                    self.which == "output")
                if lines:
                    answers.lines.frombytes(lines)
                    answers.ends.frombytes(answer_ends)
                    answers.parts.append(converted)
                    answers.size += len(converted)
                    answers.flags += bytes(len(lines) // 8)
                if pos >= end:
                    return
            newline = buf.find(b"\n", pos, end)
            stop = newline if newline >= 0 else end
            raw = buf[pos:stop]
            pos = stop + 1
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            if raw.strip():
                answers.add(self.chat_answer(raw))

    def decide_all(self, lines: bytes, flags: bytes, ends: bytes, answers: bytes) -> bytes:
        """`decide` of every packed answer (`ChatAnswers.packed()`), in the rows' order: the answers taken, joined.

        The unflagged rows by the compiled `decide_rows` in runs; each flagged one (rare) by `decide`."""
        out: list[bytes] = []
        row_lines, row_ends = memoryview(lines).cast("q"), memoryview(ends).cast("q")
        at, rows = 0, len(flags)
        while at < rows:
            if decide_rows is not None:
                at, unmatched, repeated, runs = decide_rows(lines, flags, ends, len(answers), self.answered, at)
                self.unmatched += unmatched
                self.repeated += repeated
                out += [answers[start:stop] for start, stop in runs]  # all of `answers` is that very object
                if at == rows:
                    break
            start = row_ends[at - 1] if at else 0
            self.decide((row_lines[at], flags[at], answers[start:row_ends[at]]), out)
            at += 1
        return b"".join(out)

    def _split(self, chunk: bytes) -> list[bytes]:
        """The rows that end in this chunk (non-empty, without their newline); the unfinished last one is kept."""
        rows: list[bytes] = []
        pending = self._pending
        start = 0
        if pending:
            newline = chunk.find(b"\n")
            if newline < 0:
                pending.append(chunk)
                return rows
            pending.append(chunk[:newline])
            rows.append(b"".join(pending))
            pending.clear()
            start = newline + 1
        find = chunk.find
        append = rows.append
        while True:
            newline = find(b"\n", start)
            if newline < 0:
                break
            if newline > start:
                append(chunk[start:newline])
            start = newline + 1
        if start < len(chunk):
            pending.append(chunk[start:])
        return rows

    def end_object(self) -> bytes:
        """The end of one output object: its last row, when it has no newline, is a row of its own."""
        out: list[bytes] = []
        if self._pending:
            self._row(b"".join(self._pending), out)
            self._pending.clear()
        return b"".join(out)

    def close(self) -> bytes:
        """The rest: a last row without its newline, then (error file) the lines no row answered."""
        if self._closed:
            return b""
        self._closed = True
        out = [self.end_object()]
        if self.which == "error":
            for line in sorted(self.groups):
                failure = next((slot for slot in self.groups[line] if slot is not None and slot[0] == "failed"),
                               None)
                if failure is not None:
                    self.answered[line] = 1
                    out.append(self._failed_line(line, failure[1], failure[2]))
            message = UNANSWERED_MESSAGES.get(self.unanswered, "This request was not executed.")
            for line in range(1, len(self.index) + 1):
                if not self.answered[line]:
                    out.append(_encode({"id": self._request_id(line), "custom_id": self.index.custom_id(line),
                                        "response": None, "error": {"code": self.unanswered, "message": message}})
                               + b"\n")
        self.groups.clear()
        return b"".join(out)

    # -- one row ---------------------------------------------------------------------------------------------

    def _row(self, raw: bytes, out: list[bytes]) -> None:
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        if not raw.strip():
            return
        if not self.embeddings:
            self.decide(self.chat_answer(raw), out)
            return
        try:
            row = decode_row(raw)
        except msgspec.DecodeError as exc:
            self._malformed(raw, f"the row is not a Vertex output row ({exc})", out)
            return
        self._embedding_row(row, raw, out)

    def chat_answer(self, raw: bytes) -> ChatAnswer:
        """A chat row's line and its answer in this instance's file, before deciding whether the line takes it.

        Needs nothing but the index, so byte ranges of the output can be answered apart (`output_ranges`); `decide`
        then takes the answers in the rows' order."""
        try:
            row = decode_row(raw)
        except msgspec.DecodeError as exc:
            labelled, custom_id, _ = locate(raw)
            line = self._find_line(labelled, custom_id)
            reason = f"the row is not a Vertex output row ({exc})"
            answer = self._malformed_line(line, reason) if line and self.which == "error" else b""
            return line, MALFORMED_ROW, answer
        line = self._find_line(label_line(row.request.labels) if row.request is not None else None, row.custom_id)
        if not line:
            return 0, 0, b""
        if row.response is not None:
            if self.which == "error":
                return line, 0, b""
            response = row.response
            seed = f"{self.batch_id}\x00{line}"
            request_id = "batch_req_" + _blake2b(seed.encode(), digest_size=16).hexdigest()  # = _request_id(line)
            body = chat_completion_json(response, model_json=self._model_json, seed=seed,
                                        created=unix_time(response.createTime, row.processed_time))
            return line, 0, _OK_LINE % (request_id.encode(), _encode(self.index.custom_id(line)),
                                        _encode(response.responseId or request_id[10:]), body)
        if row.status:
            if self.which == "output":
                return line, 0, b""
            code, message, name = google_error(row.status)
            return line, 0, self._failed_line(line, code, error_body(code, message, name))
        answer = self._malformed_line(line, "the row has neither a response nor a status") if self.which == "error" \
            else b""
        return line, MALFORMED_ANSWER, answer

    def decide(self, answer: ChatAnswer, out: list[bytes]) -> None:
        """Take a chat row's answer in the rows' order: the first row for a line answers it (see the module doc)."""
        line, flags, converted = answer
        if flags & MALFORMED_ROW:
            self.malformed += 1
        if not line:
            self.unmatched += 1
            return
        if self.answered[line]:
            self.repeated += 1
            return
        self.answered[line] = 1
        if flags & MALFORMED_ANSWER:
            self.malformed += 1
        if converted:
            out.append(converted)

    def _find_line(self, labelled: int | None, custom_id: str | None) -> int:
        """The line a chat row is for (0: none found)."""
        if labelled is not None and 1 <= labelled <= self._lines:
            return labelled
        if custom_id is not None:
            return self.index.line_of(custom_id) or 0
        return 0

    def _embedding_row(self, row: Row, raw: bytes, out: list[bytes]) -> None:
        content = row.instance.content if row.instance is not None else None
        slot: _Slot
        if row.predictions:
            tokens = embedding_tokens(row.predictions)
            embeddings = row.predictions[0].embeddings
            if tokens is None or embeddings is None or not embeddings.values:
                self._malformed(raw, "the row's prediction has no embedding values or a fractional token count",
                                out)
                return
            slot = ("ok", embeddings.values, tokens)
        elif row.status:
            code, message, name = google_error(row.status)
            slot = ("failed", code, error_body(code, message, name))
        else:
            self._malformed(raw, "the row has neither predictions nor a status", out)
            return
        self._settle(content, slot, out)

    def _settle(self, content: str | None, slot: _Slot, out: list[bytes]) -> None:
        """Put an embedding input's answer in its line's group, and answer the line once the group is whole."""
        found = self._embedding_input(content)
        if found is None:
            return
        line, position = found
        count = self.index.first_input(line + 1) - self.index.first_input(line)
        if count == 1:
            group: list[_Slot | None] = [slot]
        else:
            group = self.groups.setdefault(line, [None] * count)
            group[position] = slot
            if any(item is None for item in group):
                return
            del self.groups[line]
        self.answered[line] = 1
        failure = next((item for item in group if item is not None and item[0] == "failed"), None)
        if failure is not None:
            if self.which == "error":
                out.append(self._failed_line(line, failure[1], failure[2]))
        elif self.which == "output":
            data = [{"object": "embedding", "index": at, "embedding": item[1]}
                    for at, item in enumerate(group) if item is not None]
            tokens = sum(item[2] for item in group if item is not None)
            body = {"object": "list", "data": data, "model": self.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
            out.append(self._ok_line(line, None, body))

    def _embedding_input(self, content: str | None) -> tuple[int, int] | None:
        """(line, position in the line) of the first unanswered input with this content, or None."""
        if content is None:
            self.unmatched += 1
            return None
        candidates = self.index.inputs_with_digest(content_digest(content))
        if not candidates:
            self.unmatched += 1
            return None
        for at in candidates:
            if not self.inputs_answered[at]:
                self.inputs_answered[at] = 1
                line = self.index.line_of_input(at)
                return line, at - self.index.first_input(line)
        self.repeated += 1
        return None

    def _malformed(self, raw: bytes, reason: str, out: list[bytes]) -> None:
        self.malformed += 1
        _, _, content = locate(raw)
        body = error_body(500, f"Vertex answered this request with a row the proxy cannot read: {reason}.",
                          "malformed_upstream_row")
        self._settle(content, ("failed", 500, body), out)

    # -- lines -----------------------------------------------------------------------------------------------

    def _request_id(self, line: int) -> str:
        return "batch_req_" + hashlib.blake2b(f"{self.batch_id}\x00{line}".encode(), digest_size=16).hexdigest()

    def _ok_line(self, line: int, upstream_id: str | None, body: dict[str, Any]) -> bytes:
        request_id = self._request_id(line)
        return _encode({"id": request_id, "custom_id": self.index.custom_id(line),
                        "response": {"status_code": 200, "request_id": upstream_id or request_id[10:], "body": body},
                        "error": None}) + b"\n"

    def _failed_line(self, line: int, code: int, body: dict[str, Any]) -> bytes:
        request_id = self._request_id(line)
        return _encode({"id": request_id, "custom_id": self.index.custom_id(line),
                        "response": {"status_code": code, "request_id": request_id[10:], "body": body},
                        "error": None}) + b"\n"

    def _malformed_line(self, line: int, reason: str) -> bytes:
        return self._failed_line(line, 500, error_body(
            500, f"Vertex answered this request with a row the proxy cannot read: {reason}.", "malformed_upstream_row"))
