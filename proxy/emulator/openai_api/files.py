"""Files: the store (held in memory) and the five calls: upload (multipart), list, get, content, delete."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from proxy.emulator.openai_api.errors import invalid, not_found
from proxy.emulator.openai_api.flavor import Flavor

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024
BATCH_FILE_LIFETIME = 30 * 86400  # purpose=batch files expire after 30 days unless told otherwise
EXPIRY_RANGE = (3600, 2_592_000)
LIST_LIMIT = (1, 10_000)


@dataclass
class StoredFile:
    """One file and its bytes."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None

    def to_json(self) -> dict[str, Any]:
        """The FileObject."""
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": self.expires_at, "status_details": None}


class FileStore:
    """Every file of one API (the OpenAI stand-in, or one Azure resource)."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def add(self, filename: str, purpose: str, data: bytes, *, expires_after: int | None = None) -> StoredFile:
        now = int(time.time())
        lifetime = expires_after if expires_after is not None else (
            BATCH_FILE_LIFETIME if purpose == "batch" else None)
        stored = StoredFile(self.flavor.file_id(), filename, purpose, data, now,
                            None if lifetime is None else now + lifetime)
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise not_found("File", file_id)
        return stored

    def delete(self, file_id: str) -> None:
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise not_found("File", file_id)

    def newest_first(self) -> list[StoredFile]:
        with self._lock:
            files = list(self._files.values())
        return sorted(files, key=lambda f: (f.created_at, f.id), reverse=True)


def page(items: list[Any], *, after: str | None, limit: int) -> dict[str, Any]:
    """`{object: list, data, first_id, last_id, has_more}` of the items after the one with id `after`."""
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    data = items[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit}


def int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise invalid(f"Invalid '{name}': expected an integer from {low} to {high}, got {value!r}.", name)
    return number


async def upload(store: FileStore, request: Request) -> Response:
    """`POST /files` (multipart: file, purpose, expires_after[anchor], expires_after[seconds])."""
    try:
        form = await request.form()
    except Exception as exc:  # python-multipart's own errors: a body that is not multipart
        raise invalid(f"The body must be multipart/form-data ({exc}).") from None
    try:
        return await _store_upload(store, form)
    finally:
        await form.close()  # the spooled temporary files


async def _store_upload(store: FileStore, form: FormData) -> Response:
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise invalid("Missing required parameter: 'file'.", "file")
    if not isinstance(purpose, str) or purpose not in UPLOAD_PURPOSES:
        raise invalid(f"Invalid value for 'purpose': {purpose!r}; expected one of {', '.join(UPLOAD_PURPOSES)}.",
                      "purpose")
    expires_after = _expiry(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
    data = await upload.read()
    filename = upload.filename or "file"
    limit = MAX_BATCH_FILE_BYTES if purpose == "batch" else MAX_FILE_BYTES
    if len(data) > limit:
        raise invalid(f"File is too large: {len(data)} bytes; the limit for purpose '{purpose}' is {limit} bytes.",
                      "file")
    if purpose == "batch" and not filename.endswith(".jsonl"):
        raise invalid("Invalid file format for Batch API. Must be .jsonl", "file")
    stored = store.add(filename, purpose, data, expires_after=expires_after)
    return JSONResponse(stored.to_json())


def _expiry(anchor: Any, seconds: Any) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise invalid("Invalid 'expires_after[anchor]': expected 'created_at'.", "expires_after.anchor")
    low, high = EXPIRY_RANGE
    return int_param(seconds if isinstance(seconds, str) else None, "expires_after.seconds", -1, low, high)


def listing(store: FileStore, request: Request) -> Response:
    """`GET /files?purpose&limit&order&after`."""
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", LIST_LIMIT[1], *LIST_LIMIT)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid(f"Invalid 'order': expected 'asc' or 'desc', got {order!r}.", "order")
    files = store.newest_first()
    if order == "asc":
        files.reverse()
    purpose = query.get("purpose")
    items = [f.to_json() for f in files if purpose is None or f.purpose == purpose]
    return JSONResponse(page(items, after=query.get("after"), limit=limit))


def content(store: FileStore, file_id: str) -> Response:
    """`GET /files/{id}/content`: the bytes as stored."""
    return Response(store.get(file_id).data, media_type="application/octet-stream")


def delete(store: FileStore, file_id: str) -> Response:
    store.delete(file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})

