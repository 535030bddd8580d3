"""Reading a multipart upload (`file`, `purpose`, ...) with python-multipart, spooled to a temporary file on disk,
and never reading past the size cap: a declared Content-Length over it is refused before any byte is read, and a
body that streams past it is cut off there.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from proxy.errors import InvalidArgument

# Room for the multipart framing and the small fields around the file.
FRAMING_BYTES = 64 * 1024
_MAX_FIELD_BYTES = 64 * 1024


def too_large(max_bytes: int) -> InvalidArgument:
    return InvalidArgument(f"The file is larger than {max_bytes} bytes, the most a batch file may hold.",
                           param="file", code="file_too_large")


@dataclass
class Upload:
    file: UploadFile
    fields: dict[str, str]

    def close(self) -> None:
        self.file.file.close()


async def _capped(stream: AsyncIterator[bytes], limit: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_large(max_bytes)
        yield chunk


async def read_upload(request: Request, *, max_bytes: int) -> Upload:
    """The upload's `file` part (spooled) and its other fields; 400 for anything that is not one file upload."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidArgument("POST /v1/files takes multipart/form-data with a `file` and `purpose`.",
                              param="file")
    limit = max_bytes + FRAMING_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(max_bytes)
    parser = MultiPartParser(request.headers, _capped(request.stream(), limit, max_bytes), max_files=1,
                             max_fields=16, max_part_size=_MAX_FIELD_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidArgument(f"The upload is not valid multipart/form-data: {exc.message}", param="file") from None
    upload = form.get("file")
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if not isinstance(upload, UploadFile):
        for value in form.values():
            if isinstance(value, UploadFile):
                value.file.close()
        raise InvalidArgument("The upload has no `file` part.", param="file")
    return Upload(upload, fields)
