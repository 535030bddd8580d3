"""The door's own ids: `file-<24 hex>` and `batch_<24 hex>`, random; a batch's output and error files derive theirs
from the batch id, so they are known (and unique) from the batch's creation on.

Both kinds fit a Vertex label value (lowercase letters, digits, `_`, `-`), which is how a job names its batch.
"""

from __future__ import annotations

import hashlib
import re
import secrets

FILE_ID_RE = re.compile(r"file-[0-9a-f]{24,64}")
BATCH_ID_RE = re.compile(r"batch_[0-9a-f]{24,64}")


def new_file_id() -> str:
    """A fresh id for an uploaded file."""
    return f"file-{secrets.token_hex(12)}"


def new_batch_id() -> str:
    """A fresh id for a batch."""
    return f"batch_{secrets.token_hex(12)}"


def batch_file_id(batch_id: str, which: str) -> str:
    """The id of a batch's `output` or `error` file."""
    return "file-" + hashlib.sha256(f"{batch_id}/{which}".encode()).hexdigest()[:24]
