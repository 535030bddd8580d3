"""A caller's OpenAI batch file -> a Vertex batch input file, every line checked before anything is kept.

`convert_file` reads the caller's JSONL in chunks and writes one native Vertex line per request (chat:
`{"custom_id": ..., "request": <GenerateContentRequest>}`, see `chat_request`; embeddings: one
`{"content": ...}` line per input, see `embedding_lines`). It stops at the first bad line with `FileRejected`,
whose message names the line and the problem. Checks, in the order a line meets them: the file's size (counted
while reading: a file over max_bytes stops there), UTF-8 JSON object, the keys of the line (custom_id, method,
url, body and nothing else), custom_id a unique non-empty string, method POST, url a chat or embeddings url, the
same url on every line, body.model a string, the same model on every line, the model fits the url (embedding
models on /v1/embeddings only), the number of requests (embedding inputs count each) against max_lines, then
the body's own conversion.

A file of a model that runs on OpenAI or Azure (`keep(model)` true) is checked the same way up to its body, then
kept as the caller wrote it: nothing is converted or written to the sink (`ConvertedFile.kept`).

Blank lines: one or more at the end of the file are fine (editors add them); a blank line followed by another
request is refused, as it most likely marks a file cut and pasted together wrongly. A CR before the LF is not
part of the line.

Speed: after the first line of a chat file, the lines are offered to the compiled fast path first
(`_chatscan.chat_lines`, C), a run at a time: it converts lines of the common shape (text messages, the common
parameters) of the file's model, byte for byte as the Python path would, up to the first line it cannot vouch for;
this module then checks the run's custom_ids and count as for any line. That line, every run with a repeated
custom_id or past the line limit, and every line of a file of another shape, are read by the Python path below (the
reference), so every error message is the Python path's. Without a C compiler the Python path reads every line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgspec

from proxy.openai_door.chat_request import chat_request
from proxy.openai_door.embedding_lines import embedding_inputs
from proxy.openai_door.line_index import LineIndex, LineIndexBuilder
from proxy.openai_door.rejections import FileRejected, LineProblem

FastLines = Callable[[bytes, int, str, int], tuple[int, list[str], bytes]]
fast_chat_lines: FastLines | None
try:
    from proxy.openai_door._chatscan import chat_lines as fast_chat_lines
except ImportError:  # built without a C compiler: the Python path converts every line, to the same bytes
    fast_chat_lines = None

__all__ = ["ConvertedFile", "FileRejected", "convert_file", "is_embedding_model", "CHAT", "EMBEDDINGS"]

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
URLS = {"/v1/chat/completions": CHAT, "/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS}
READ_BYTES = 1 << 20
WRITE_BYTES = 1 << 20
_LINE_KEYS = ("custom_id", "method", "url", "body")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def is_embedding_model(model: str) -> bool:
    """Embedding models answer /v1/embeddings lines (as the emulator and the pricing tables tell them apart)."""
    return "embedding" in model


@dataclass(frozen=True)
class ConvertedFile:
    """What a converted file holds."""

    model: str  # body.model of every line, as the caller wrote it
    endpoint: str  # CHAT or EMBEDDINGS (the normalised url)
    lines: int  # the caller's requests
    bytes: int  # size of the caller's file
    index: LineIndex  # what output conversion needs to give each row back its custom_id
    vertex_lines: int = 0  # lines of the converted file (embeddings: one per input)
    kept: bool = False  # the lines are kept unchanged (an OpenAI or Azure model): nothing was converted


def convert_file(source: BinaryIO, sink: BinaryIO, *, max_lines: int, max_bytes: int,
                 check_gcs_uri: Callable[[str], None] = lambda uri: None,
                 keep: Callable[[str], bool] = lambda model: False, native: bool = True) -> ConvertedFile:
    """Check every line of the caller's JSONL in `source` and write native Vertex batch input lines to `sink`.

    Raises FileRejected at the first bad line. Memory does not grow with the file (only the custom_id index).
    `check_gcs_uri` is called with every gs:// URI a line references and raises when the team may not use it.
    `keep(model)`: whether the file's model runs where lines go unchanged (then nothing is written to `sink`).
    `native` False: the Python path reads every line (the reference the tests hold the compiled fast path to).
    """
    converter = _Converter(sink, max_lines=max_lines, check_gcs_uri=check_gcs_uri, keep=keep,
                           native=native and fast_chat_lines is not None)
    size = 0
    pending = b""
    while True:
        chunk = source.read(READ_BYTES)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FileRejected(f"The file is larger than the {max_bytes:,} bytes a batch file may have.",
                               code="file_too_large")
        data = pending + chunk if pending else chunk
        start = 0
        while True:
            start = converter.run(data, start)
            end = data.find(b"\n", start)
            if end < 0:
                break
            converter.line(data, start, end)
            start = end + 1
        pending = data[start:]
    if pending:
        converter.line(pending, 0, len(pending))
    return converter.finish(size)


class _Converter:
    """The state of one conversion: the first line's url and model, the custom_ids seen, the output buffer."""

    def __init__(self, sink: BinaryIO, *, max_lines: int, check_gcs_uri: Callable[[str], None],
                 keep: Callable[[str], bool], native: bool) -> None:
        self.sink = sink
        self.native = native
        self.keep = keep
        self.kept = False  # decided on the first line, by its model
        self.max_lines = max_lines
        self.check_gcs_uri = check_gcs_uri
        self.number = 0  # the line being read, 1-based
        self.requests = 0  # against max_lines: requests, or embedding inputs
        self.blank_at: int | None = None
        self.seen: dict[str, int] = {}  # custom_id -> its line, for "used twice (first on line N)"
        self.url: str | None = None
        self.model: str | None = None
        self.index: LineIndexBuilder | None = None
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.vertex_lines = 0
        self.fast: FastLines | None = None  # set by the first line: a chat file converted here
        self.slow_until = (b"", 0)  # a run the fast path took but the checks refused: read by the Python path

    def reject(self, message: str, *, code: str, param: str | None = None) -> FileRejected:
        return FileRejected(f"Line {self.number}: {message}", code=code, line=self.number, param=param)

    def run(self, data: bytes, start: int) -> int:
        """The fast path's run of whole lines from `start` (see the module's docstring); where the next line starts."""
        if self.fast is None or self.blank_at is not None or self.model is None:
            return start
        if self.slow_until[0] is data and start < self.slow_until[1]:
            return start
        stop, ids, converted = self.fast(data, start, self.model, self.number + 1)
        count = len(ids)
        if not count:
            return start
        if (self.requests + count > self.max_lines or len(set(ids)) != count
                or not self.seen.keys().isdisjoint(ids)):
            self.slow_until = (data, stop)  # one of these lines is refused: the Python path finds it and says why
            return start
        first = self.number + 1
        self.seen.update(zip(ids, range(first, first + count), strict=True))
        self.number += count
        self.requests += count
        self.vertex_lines += count
        self.out.append(converted)
        self.out_bytes += len(converted)
        if self.out_bytes >= WRITE_BYTES:
            self._flush()
        assert self.index is not None
        self.index.add_chat(ids)
        return stop

    def line(self, data: bytes, start: int, end: int) -> None:
        self.number += 1
        if end > start and data[end - 1] == 13:  # CR
            end -= 1
        raw = data[start:end]
        if not raw.strip():
            if self.blank_at is None:
                self.blank_at = self.number
            return
        if self.blank_at is not None:
            raise FileRejected(f"Line {self.blank_at}: the line is blank, and more requests follow it (a batch file "
                               "holds one JSON request per line; only blank lines at the very end are ignored).",
                               code="invalid_json_line", line=self.blank_at)
        try:
            item = _decode(raw)
        except msgspec.DecodeError as exc:
            reason = str(exc)
            what = "not valid UTF-8" if "UTF-8" in reason else f"not valid JSON ({reason})"
            raise self.reject(f"the line is {what}.", code="invalid_json_line") from None
        if not isinstance(item, dict):
            raise self.reject("the line is not a JSON object.", code="invalid_json_line")
        custom_id, body = self._envelope(item)
        if self.kept:
            inputs = body.get("input") if self.url == EMBEDDINGS else None
            self._count(len(inputs) if isinstance(inputs, list) and inputs else 1)
            assert self.index is not None
            self.index.add(custom_id)
            return
        try:
            if self.url == CHAT:
                request = chat_request(body, line=self.number, check_gcs_uri=self.check_gcs_uri)
                self._count(1)
                self._write(_encode({"custom_id": custom_id, "request": request}))
                contents = None
            else:
                contents = embedding_inputs(body)
                self._count(len(contents))
                for content in contents:
                    self._write(_encode({"content": content}))
        except LineProblem as problem:
            raise self.reject(problem.message, code=problem.code, param=problem.param) from None
        assert self.index is not None
        self.index.add(custom_id, contents)

    def _envelope(self, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Check the line's own keys (everything but the body's contents); returns its custom_id and body."""
        for key in item:
            if key not in _LINE_KEYS:
                raise self.reject(f"the line has a key {key!r}; a request line has only custom_id, method, url and "
                                  "body.", code="invalid_request", param=key)
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise self.reject("custom_id must be a non-empty string.", code="invalid_request", param="custom_id")
        first = self.seen.get(custom_id)
        if first is not None:
            raise self.reject(f"custom_id {custom_id!r} is used twice (first on line {first}).",
                              code="duplicate_custom_id", param="custom_id")
        self.seen[custom_id] = self.number
        if item.get("method") != "POST":
            raise self.reject(f"method must be \"POST\", not {item.get('method')!r}.", code="invalid_request",
                              param="method")
        url = URLS.get(item.get("url"))  # type: ignore[arg-type]
        if url is None:
            raise self.reject(f"url {item.get('url')!r} is not supported (use /v1/chat/completions or "
                              "/v1/embeddings).", code="invalid_request", param="url")
        if self.url is not None and url != self.url:
            raise self.reject(f"url {item['url']!r} differs from the first line's {self.url!r} (one endpoint per "
                              "file).", code="url_mismatch", param="url")
        body = item.get("body")
        if not isinstance(body, dict):
            raise self.reject("body must be a JSON object.", code="invalid_request", param="body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self.reject("body.model must name the model (a string).", code="missing_model",
                              param="body.model")
        if self.model is not None and model != self.model:
            raise self.reject(f"body.model {model!r} differs from the first line's {self.model!r} (one model per "
                              "file).", code="model_mismatch", param="body.model")
        if is_embedding_model(model) != (url == EMBEDDINGS):
            wanted = EMBEDDINGS if is_embedding_model(model) else CHAT
            raise self.reject(f"url {item['url']!r} does not fit model {model!r} (it answers {wanted}).",
                              code="url_mismatch", param="url")
        needed = "input" if url == EMBEDDINGS else "messages"
        if needed not in body:
            raise self.reject(f"body.{needed} is missing.", code="invalid_request", param=f"body.{needed}")
        if self.url is None:
            self.url, self.model = url, model
            self.kept = self.keep(model)
            self.fast = fast_chat_lines if self.native and url == CHAT and not self.kept else None
            self.index = LineIndexBuilder("embeddings" if url == EMBEDDINGS and not self.kept else "chat")
        return custom_id, body

    def _count(self, requests: int) -> None:
        self.requests += requests
        if self.requests > self.max_lines:
            what = "requests" if self.url == CHAT else "embedding inputs"
            raise self.reject(f"the file holds more than the {self.max_lines:,} {what} a batch may have.",
                              code="too_many_tasks")

    def _write(self, encoded: bytes) -> None:
        self.out.append(encoded)
        self.out.append(b"\n")
        self.vertex_lines += 1
        self.out_bytes += len(encoded) + 1
        if self.out_bytes >= WRITE_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.out:
            self.sink.write(b"".join(self.out))
            self.out.clear()
            self.out_bytes = 0

    def finish(self, size: int) -> ConvertedFile:
        if self.index is None or self.url is None or self.model is None:
            raise FileRejected("The file is empty: a batch file needs at least one request line.",
                               code="empty_file")
        self._flush()
        index = self.index.build()
        return ConvertedFile(model=self.model, endpoint=self.url, lines=len(index), bytes=size, index=index,
                             vertex_lines=self.vertex_lines, kept=self.kept)
