"""Runs jobs in background threads: PENDING for a quarter of the job's pace, then RUNNING while rows are
written at a steady rate over the other three quarters, then SUCCEEDED (or FAILED / CANCELLED).

Rows are read from Cloud Storage in windows of lines; each window is written in a deterministic shuffled
order (Vertex's output order is not the input order). A cancel stops the writing between two rows, and the
rows already written stay in the output, as on Vertex; `incompleteCount` then counts the unwritten rows of
the window in progress (later input is not read).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing

from google.cloud import storage

from proxy.emulator.faults import LargeOutput
from proxy.emulator.gcs import JobFailure, OutputSink, client_for, iter_lines, resolve_inputs
from proxy.emulator.jobs import Job, JobStore, now_utc
from proxy.emulator.predictions import RowMaker, rfc3339
from proxy.errors import RPC_CODES
from proxy.providers.vertex.states import JobState

log = logging.getLogger(__name__)

PENDING_SHARE = 0.25
WINDOW_LINES = 1000
WINDOW_BYTES = 4 * 1024 * 1024


def picks_failure(index: int, share: float) -> bool:
    """Whether row `index` is one of the floor(n * share) failed rows of the `failed_row_share` fault."""
    return math.floor((index + 1) * share) > math.floor(index * share)


def output_directory(prefix: str, job: Job) -> str:
    """`{outputUriPrefix}/prediction-model-{createTime}`, as Vertex names it."""
    return f"{prefix.rstrip('/')}/prediction-model-{rfc3339(job.create_time)}"


class Cancelled(Exception):
    """The job was asked to stop between two rows."""


class Runner:
    """Starts one thread per job and stops them all at shutdown."""

    def __init__(self, store: JobStore, *, gcs_url: str, project: str, echo_keys: bool = True) -> None:
        self.store = store
        self.echo_keys = echo_keys
        self.gcs_url = gcs_url
        self.project = project
        self._threads: list[threading.Thread] = []
        self._shutdown = threading.Event()

    def submit(self, job: Job) -> None:
        thread = threading.Thread(target=self._run, args=(job,), name=f"vbp-job-{job.job_id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt every running job and wait for its thread."""
        self._shutdown.set()
        for job in self.store.all():
            job.cancel_requested.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, job: Job) -> None:
        try:
            self._execute(job)
        except Cancelled:
            self.store.finish(job, JobState.JOB_STATE_CANCELLED,
                              error={"code": RPC_CODES["CANCELLED"], "message": "CANCELED"})
        except JobFailure as failure:
            self.store.finish(job, JobState.JOB_STATE_FAILED, error={"code": failure.code, "message": failure.message})
        except Exception as exc:  # the emulator must not leave a job RUNNING forever
            if not self._shutdown.is_set():
                log.exception("job %s crashed", job.name)
            self.store.finish(job, JobState.JOB_STATE_FAILED,
                              error={"code": RPC_CODES["INTERNAL"], "message": f"Internal error: {exc}"})

    def _execute(self, job: Job) -> None:
        _wait_until(job, time.monotonic() + job.job_seconds * PENDING_SHARE)
        output = job.spec["outputConfig"]
        if "gcsDestination" not in output or "gcsSource" not in job.spec["inputConfig"]:
            raise JobFailure(RPC_CODES["UNIMPLEMENTED"], "The emulator reads and writes Cloud Storage only, "
                                                         "not BigQuery.")
        directory = output_directory(output["gcsDestination"]["outputUriPrefix"], job)
        if not self.store.start(job, directory):
            raise Cancelled
        run_seconds = job.job_seconds * (1 - PENDING_SHARE)
        started = time.monotonic()
        if job.faults.fail:
            _wait_until(job, started + run_seconds / 2)
            raise JobFailure(RPC_CODES["INTERNAL"], "Internal error occurred. Batch prediction job failed "
                                                    "(injected by the emulator: fail_jobs).")
        # One client per job, closed with it: a client left to the garbage collector leaves its socket open.
        with closing(client_for(self.gcs_url, self.project)) as client:
            large = job.faults.large_output
            blobs = [] if large else resolve_inputs(client, job.spec["inputConfig"]["gcsSource"]["uris"])
            sink = OutputSink(client, directory, shards=job.faults.output_shards,
                              incremental_copy=job.faults.incremental_copy)
            try:
                if large is not None:
                    self._write_generated(job, sink, large)
                else:
                    self._write_predictions(job, sink, blobs, started, run_seconds)
            finally:
                sink.close()
        self.store.finish(job, JobState.JOB_STATE_SUCCEEDED)

    def _write_predictions(self, job: Job, sink: OutputSink, blobs: list[storage.Blob], started: float,
                           run_seconds: float) -> None:
        maker = RowMaker(model=job.model_id, job_id=job.job_id, echo_keys=self.echo_keys)
        total_bytes = sum(blob.size or 0 for blob in blobs) or 1
        done_bytes = 0
        index = 0
        for number, (lines, size) in enumerate(_windows(line for blob in blobs for line in iter_lines(blob))):
            order = list(range(len(lines)))
            random.Random(f"{job.job_id}/{number}").shuffle(order)
            for position, k in enumerate(order):
                due = started + run_seconds * (done_bytes + size * (position + 1) / len(lines)) / total_bytes
                try:
                    _wait_until(job, due)
                except Cancelled:
                    self.store.count(job, incomplete=len(lines) - position)
                    raise
                row, ok = maker.row(lines[k], index + k, now=now_utc(),
                                    fail=picks_failure(index + k, job.faults.failed_row_share))
                sink.write(row)
                self.store.count(job, successful=int(ok), failed=int(not ok))
            done_bytes += size
            index += len(lines)

    def _write_generated(self, job: Job, sink: OutputSink, large: LargeOutput) -> None:
        good, bad = generated_rows(job, large.row_bytes)
        successful = failed = 0
        for index in range(large.rows):
            if index % 1000 == 0:
                # Counting every row under the lock would slow a 1 GB run for nothing.
                self.store.count(job, successful=successful, failed=failed)
                successful = failed = 0
                if job.cancel_requested.is_set():
                    self.store.count(job, incomplete=large.rows - index)
                    raise Cancelled
            if picks_failure(index, job.faults.failed_row_share):
                sink.write(bad.replace(b"row-000000000", f"row-{index:09d}".encode(), 1))
                failed += 1
            else:
                sink.write(good.replace(b"row-000000000", f"row-{index:09d}".encode(), 1))
                successful += 1
        self.store.count(job, successful=successful, failed=failed)


def generated_rows(job: Job, row_bytes: int) -> tuple[bytes, bytes]:
    """A good and a failed row of about `row_bytes` bytes each, for the `large_output` fault."""
    maker = RowMaker(model=job.model_id, job_id=job.job_id)
    now = now_utc()

    def make(words: int, fail: bool) -> bytes:
        request = {"contents": [{"role": "user", "parts": [{"text": " ".join(["lorem"] * words)}]}],
                   "generationConfig": {"maxOutputTokens": 16}}
        line = json.dumps({"custom_id": "row-000000000", "request": request}).encode()
        return maker.row(line, 0, now=now, fail=fail)[0]

    base = len(make(1, False))
    words = max(1, 1 + (row_bytes - base) // len(" lorem"))
    return make(words, False), make(words, True)


def _wait_until(job: Job, deadline: float) -> None:
    """Sleep until `deadline` (monotonic), or raise Cancelled as soon as the job is asked to stop."""
    remaining = deadline - time.monotonic()
    stopped = job.cancel_requested.wait(remaining) if remaining > 0 else job.cancel_requested.is_set()
    if stopped:
        raise Cancelled


def _windows(lines: Iterable[bytes]) -> Iterator[tuple[list[bytes], int]]:
    """Group non-blank lines into windows; each comes with the input bytes it covers (for pacing)."""
    window: list[bytes] = []
    size = 0
    for line in lines:
        size += len(line) + 1
        if line.strip():
            window.append(line)
        if len(window) >= WINDOW_LINES or size >= WINDOW_BYTES:
            if window:
                yield window, size
                window, size = [], 0
    if window:
        yield window, size
