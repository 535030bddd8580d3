"""Reading a multipart upload (`file`, `purpose`, ...) as it arrives, with python-multipart's streaming parser: the
small fields are kept, the `file` part's bytes are handed on while the body is still being received (the
conversion reads them from a pipe), never spooled first. Nothing past the size cap is read: a declared
Content-Length over it is refused before any byte is read, and a body that streams past it is cut off there.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from proxy.errors import InvalidArgument

# Room for the multipart framing and the small fields around the file.
FRAMING_BYTES = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 16


def too_large(max_bytes: int) -> InvalidArgument:
    return InvalidArgument(f"The file is larger than {max_bytes} bytes, the most a batch file may hold.",
                           param="file", code="file_too_large")


def not_multipart(reason: str) -> InvalidArgument:
    return InvalidArgument(f"The upload is not valid multipart/form-data: {reason}", param="file")


def no_file_part() -> InvalidArgument:
    return InvalidArgument("The upload has no `file` part.", param="file")


@dataclass(frozen=True)
class Field:
    """A small form field, whole."""

    name: str
    value: str


@dataclass(frozen=True)
class FileStart:
    """The `file` part begins (its bytes follow as FileData)."""

    filename: str


@dataclass(frozen=True)
class FileData:
    """Bytes of the `file` part, in order."""

    data: bytes


Event = Field | FileStart | FileData


async def _capped(stream: AsyncIterator[bytes], limit: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_large(max_bytes)
        yield chunk


def _decode(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Parts:
    """python-multipart's callbacks, turned into the events of one written chunk."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.field: str | None = None  # the small field being read, or None while in the file part
        self.field_data = bytearray()
        self.fields = 0
        self.file_seen = False
        self.ended = False  # the closing boundary was read (python-multipart does not check it at `finalize`)
        self.callbacks = {
            "on_part_begin": self.part_begin, "on_part_data": self.part_data, "on_part_end": self.part_end,
            "on_header_field": self.header_field, "on_header_value": self.header_value_,
            "on_header_end": self.header_end, "on_headers_finished": self.headers_finished, "on_end": self.end,
        }

    def end(self) -> None:
        self.ended = True

    def part_begin(self) -> None:
        self.disposition = b""
        self.field = None
        self.field_data.clear()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise not_multipart('the Content-Disposition header field "name" must be provided.')
        name = _decode(options[b"name"])
        if b"filename" not in options:
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise not_multipart(f"Too many fields. Maximum number of fields is {MAX_FIELDS}.")
            self.field = name
            return
        if self.file_seen:
            raise not_multipart("Too many files. Maximum number of files is 1.")
        if name != "file":
            raise no_file_part()
        self.file_seen = True
        self.events.append(FileStart(_decode(options[b"filename"])))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.field is None:
            self.events.append(FileData(data[start:end]))
            return
        if len(self.field_data) + end - start > MAX_FIELD_BYTES:
            raise not_multipart(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")
        self.field_data += data[start:end]

    def part_end(self) -> None:
        if self.field is not None:
            self.events.append(Field(self.field, _decode(bytes(self.field_data))))


async def upload_events(request: Request, *, max_bytes: int) -> AsyncGenerator[Event, None]:
    """The upload's fields and its `file` part's bytes as they arrive; 400 for anything that is not one file upload
    (a declared size over the cap before any byte is read)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidArgument("POST /v1/files takes multipart/form-data with a `file` and `purpose`.",
                              param="file")
    limit = max_bytes + FRAMING_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(max_bytes)
    _, params = parse_options_header(content_type)
    if b"boundary" not in params:
        raise not_multipart("Missing boundary in multipart.")
    parts = _Parts()
    parser = MultipartParser(params[b"boundary"], parts.callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in _capped(request.stream(), limit, max_bytes):
            parser.write(chunk)
            for event in parts.events:
                yield event
            parts.events.clear()
        parser.finalize()
    except FormParserError:
        raise not_multipart("Invalid multipart data.") from None
    if not parts.ended:  # a body cut short: the file part may be cut too, so it is never taken as whole
        raise not_multipart("Invalid multipart data.")
    for event in parts.events:
        yield event
    if not parts.file_seen:
        raise no_file_part()
