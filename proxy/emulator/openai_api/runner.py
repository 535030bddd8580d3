"""Runs batches in background threads at the emulator's pace (`job_seconds` of the batch's creation):
validating for a quarter, in_progress for half (lines answered at a steady rate), finalizing for the last
quarter, then completed with its output file (and error file). A cancel stops between two lines; what was
answered stays in the output, as on OpenAI.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from proxy.emulator.openai_api.batches import Batch, BatchStore
from proxy.emulator.openai_api.files import FileStore
from proxy.emulator.openai_api.lines import answer, read_input
from proxy.emulator.runner import picks_failure

log = logging.getLogger(__name__)

VALIDATING_SHARE = 0.25
IN_PROGRESS_SHARE = 0.5


class Cancelled(Exception):
    """The batch was asked to stop."""


class BatchRunner:
    """One thread per batch; `stop` interrupts them all."""

    def __init__(self, batches: BatchStore, files: FileStore) -> None:
        self.batches = batches
        self.files = files
        self._threads: list[threading.Thread] = []

    def submit(self, batch: Batch) -> None:
        thread = threading.Thread(target=self._run, args=(batch,), name=f"vbp-batch-{batch.id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        for batch in self.batches.all():
            batch.cancel_requested.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, batch: Batch) -> None:
        records: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        try:
            self._execute(batch, records)
        except Cancelled:
            self._write(batch, *records, cancelled=True)
            self.batches.move(batch, "cancelled")
        except Exception as exc:  # the emulator must not leave a batch unfinished forever
            log.exception("batch %s crashed", batch.id)
            self.batches.move(batch, "failed", errors=[{"code": "server_error", "message": f"Internal error: {exc}",
                                                         "param": None, "line": None}])

    def _execute(self, batch: Batch, records: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        started = time.monotonic()
        pace = batch.job_seconds
        _wait_until(batch, started + pace * VALIDATING_SHARE)
        read = read_input(self.files.get(batch.input_file_id).data, flavor=self.files.flavor,
                          endpoint=batch.endpoint)
        if batch.faults.fail:
            read.errors.append({"code": "server_error", "message": "The batch failed (injected by the emulator: "
                                "fail_jobs).", "param": None, "line": None})
        if read.errors:
            self.batches.move(batch, "failed", errors=read.errors)
            return
        model = self.files.flavor.model_behind(read.model or "") or ""
        if not self.batches.move(batch, "in_progress", total=len(read.lines)):
            raise Cancelled
        run_seconds = pace * IN_PROGRESS_SHARE
        outputs, failures = records
        for index, line in enumerate(read.lines):
            _wait_until(batch, started + pace * VALIDATING_SHARE + run_seconds * (index + 1) / len(read.lines))
            result = answer(line, model=model, flavor=self.files.flavor,
                            fail=picks_failure(index, batch.faults.failed_row_share))
            (outputs if result.ok else failures).append(result.record)
            self.batches.count(batch, ok=result.ok, tokens=result.tokens)
        if not self.batches.move(batch, "finalizing"):
            raise Cancelled
        _wait_until(batch, started + pace)
        self._write(batch, outputs, failures, cancelled=False)
        if not self.batches.move(batch, "completed"):
            raise Cancelled

    def _write(self, batch: Batch, outputs: list[dict[str, Any]], failures: list[dict[str, Any]],
               *, cancelled: bool) -> None:
        """Store the output and error files (once) and name them on the batch."""
        if batch.output_file_id is not None or batch.error_file_id is not None:
            return
        flavor = self.files.flavor
        if outputs or not cancelled:
            batch.output_file_id = self.files.add(f"batch_{batch.id}_output.jsonl", "batch_output",
                                                  _jsonl(outputs)).id
        if failures or (flavor.always_error_file and not cancelled):
            batch.error_file_id = self.files.add(f"batch_{batch.id}_error.jsonl", "batch_output",
                                                 _jsonl(failures)).id


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def _wait_until(batch: Batch, deadline: float) -> None:
    """Sleep until `deadline` (monotonic), or raise Cancelled as soon as the batch is asked to stop."""
    remaining = deadline - time.monotonic()
    stopped = batch.cancel_requested.wait(remaining) if remaining > 0 else batch.cancel_requested.is_set()
    if stopped:
        raise Cancelled
