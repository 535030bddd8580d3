"""Storing an uploaded batch file: converted while both of its objects upload, so conversion and transfer overlap.

The conversion runs in the calling thread and reads the caller's bytes through a tee: every byte read goes into
one pipe (the caller's bytes, `input.jsonl`), every converted line into another (`vertex.jsonl`); a thread per
pipe uploads it with a resumable upload as it fills (`FilesBucket.upload_pipe`). The pipes are bounded, so
memory stays flat and the slowest of the three sets the pace.

A file rejected mid-way (FileRejected) aborts both pipes: both uploads are cancelled unfinished, so nothing of the
file is stored (no object to remove). An upload that fails stops the conversion at its next write; the error
raised is the upload's. Removing what a later failure leaves behind (an object finished before the other failed,
the index, the row) is the caller's (`files_api._store`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import BinaryIO, cast

from proxy.openai_door.bucket import CONVERTED, INPUT, FilesBucket
from proxy.openai_door.file_conversion import ConvertedFile, convert_file
from proxy.openai_door.pipe import Pipe, PipeAborted, TeeReader

JSONL = "application/jsonl"
PIPE_BYTES = 4 << 20  # held between the conversion and each upload, at most


def convert_and_upload(bucket: FilesBucket, folder: str, source: BinaryIO, *, max_lines: int, max_bytes: int,
                       check_gcs_uri: Callable[[str], None] = lambda uri: None,
                       keep: Callable[[str], bool] = lambda model: False,
                       pipe_bytes: int = PIPE_BYTES) -> ConvertedFile:
    """Convert `source` into `folder`'s vertex.jsonl while it and the caller's bytes (input.jsonl) upload.

    Raises FileRejected (nothing stored), or the first upload's error. A kept file (`keep(model)`: an OpenAI or
    Azure model) leaves vertex.jsonl empty."""
    originals, converted = Pipe(pipe_bytes), Pipe(pipe_bytes)
    with ThreadPoolExecutor(2, thread_name_prefix="vbp-upload") as pool:
        uploads = [pool.submit(bucket.upload_pipe, folder + name, pipe, content_type=JSONL)
                   for name, pipe in ((INPUT, originals), (CONVERTED, converted))]
        try:
            result = convert_file(cast(BinaryIO, TeeReader(source, originals)), cast(BinaryIO, converted),
                                  max_lines=max_lines, max_bytes=max_bytes, check_gcs_uri=check_gcs_uri,
                                  keep=keep)
        except BaseException as exc:
            originals.abort(exc)
            converted.abort(exc)
            wait(uploads)
            failed = _first_failure(uploads)
            if isinstance(exc, PipeAborted) and failed is not None:
                raise failed from None  # the conversion stopped because an upload failed: that is the error
            raise
        originals.close()
        converted.close()
        wait(uploads)
    failed = _first_failure(uploads)
    if failed is not None:
        raise failed
    return result


def _first_failure(uploads: list[Future[None]]) -> BaseException | None:
    """The error an upload failed with; one that only saw the pipe aborted (by us) comes last."""
    errors = [error for error in (upload.exception() for upload in uploads) if error is not None]
    errors.sort(key=lambda error: isinstance(error, PipeAborted))
    return errors[0] if errors else None
