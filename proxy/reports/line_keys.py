"""The key of each output line in a per-line cost export: what a team joins the line's cost on.

`job_key_reader(job, ...)` picks the function for a job: for a batch of the OpenAI door, the caller's `custom_id`
found through the batch's line index (`proxy.openai_door.batch_line_keys`: the line label in the echoed request, or
the embedding's content, so it holds when Vertex echoes no sibling keys); `key_reader(job)` is the choice without
the index (the echoed sibling `custom_id`, which `custom_id_key` reads). A native job's key is a hash of the
request the row echoes: `req_` and the 32 hex digits of the XXH3-128 hash of the `request` member's JSON text as
the output file holds it (`instance` for embedding rows).
It is stable: every export of the same output gives every line the same key.
(XXH3-128 rather than a cryptographic hash: the key names a line for a join, it proves nothing, and 128 bits make
an accidental collision within a job as unlikely as SHA-256's first 128 bits would. On a 4 KB request it takes
0.2 µs against SHA-256's 3.2-3.7 µs, which was a quarter of the export's CPU per line.)
(Hashing the text as written rather than a re-serialised canonical form keeps the export at the metering's speed;
Vertex re-serialises the echoed request anyway, so no input-side form would match it byte for byte.)
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import xxhash
from google.cloud import storage

from proxy.ledger.models import Job

KeyReader = Callable[[bytes], str | None]


class _Echo(msgspec.Struct):
    # Raw: the members are located and checked as JSON, never built into Python objects.
    request: msgspec.Raw = msgspec.Raw()
    instance: msgspec.Raw = msgspec.Raw()


class _CustomId(msgspec.Struct):
    custom_id: str | None = None


_decode_echo = msgspec.json.Decoder(_Echo).decode
_decode_custom_id = msgspec.json.Decoder(_CustomId).decode

# The key's hash, in one place: the readers that find the echoed request's span themselves hash it with these.
echo_digest = xxhash.xxh3_128_digest  # 16 bytes (the compiled record writer prints their hex)


def echo_key(echoed: bytes | memoryview) -> str:
    """The key of a row whose echoed request (or instance) is the JSON text `echoed`."""
    return "req_" + xxhash.xxh3_128_hexdigest(echoed)


def request_key(line: bytes) -> str | None:
    """`req_<hex>` of the row's echoed request (or embedding instance); None when the row has neither or is no JSON."""
    try:
        echo = _decode_echo(line)
    except msgspec.MsgspecError:
        return None
    echoed = echo.request or echo.instance
    if not echoed:
        return None
    return echo_key(echoed)


def custom_id_key(line: bytes) -> str | None:
    """The row's `custom_id` (OpenAI-format output), else its request's key."""
    try:
        custom_id = _decode_custom_id(line).custom_id
    except msgspec.MsgspecError:
        custom_id = None
    return custom_id if custom_id is not None else request_key(line)


def key_reader(job: Job) -> KeyReader:
    """The key function for a job's lines: the custom_id of a batch of the OpenAI door, else the request's hash."""
    return custom_id_key if getattr(job, "batch_id", None) else request_key


def job_key_reader(job: Job, *, client: storage.Client, files_bucket: str | None) -> KeyReader:
    """The key function for a job's lines, a door batch's read through its line index in VBP_FILES_BUCKET."""
    # Imported here: the door's reader builds on this module's keys.
    from proxy.openai_door.batch_line_keys import batch_key_reader

    return batch_key_reader(client, files_bucket=files_bucket, job=job) or key_reader(job)
