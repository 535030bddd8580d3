"""Helpers of the OpenAI door's conversion tests: build caller lines, convert them, run them through the emulator."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from proxy.emulator.predictions import RowMaker
from proxy.openai_door.file_conversion import ConvertedFile, convert_file
from proxy.openai_door.output_conversion import OutputLines

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CHAT_MODEL = "gemini-2.5-flash-lite"
EMBEDDING_MODEL = "text-embedding-005"


def chat_line(custom_id: str, body: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A caller's chat request line (one user message unless `body` says otherwise)."""
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Hello from {custom_id}"}],
                     **(body or {})}}
    line.update(changes)
    return line


def embedding_line(custom_id: str, text: str | list[str], **extra: Any) -> dict[str, Any]:
    """A caller's embeddings request line."""
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
            "body": {"model": EMBEDDING_MODEL, "input": text, **extra}}


def jsonl(*lines: dict[str, Any]) -> bytes:
    """Lines as a JSONL file."""
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def convert(data: bytes, *, max_lines: int = 50_000, max_bytes: int = 200_000_000,
            **kwargs: Any) -> tuple[ConvertedFile, bytes]:
    """Convert a caller's file held in memory: (what it holds, the Vertex lines)."""
    sink = io.BytesIO()
    converted = convert_file(io.BytesIO(data), sink, max_lines=max_lines, max_bytes=max_bytes, **kwargs)
    return converted, sink.getvalue()


def emulate(vertex: bytes, model: str, *, fail: frozenset[int] = frozenset()) -> list[bytes]:
    """The emulator's output rows for converted lines (the 0-based lines in `fail` forced to fail)."""
    maker = RowMaker(model=model, job_id="projects/1/locations/us-central1/batchPredictionJobs/42")
    return [maker.row(line, at, now=NOW, fail=at in fail)[0] for at, line in enumerate(vertex.splitlines())]


def answer(converted: ConvertedFile, rows: bytes, *, unanswered: str = "batch_expired",
           batch_id: str = "batch_test") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The output file's and the error file's lines, parsed, for the same rows."""
    files = []
    for which in ("output", "error"):
        lines = OutputLines(converted.index, model=converted.model, batch_id=batch_id, which=which,  # type: ignore[arg-type]
                            unanswered=unanswered)
        data = lines.feed(rows) + lines.close()
        files.append([json.loads(line) for line in data.splitlines()])
    return files[0], files[1]
