"""The output conversion's fast paths held to their references, byte for byte.

- `chat_completion_json` (byte templates) against msgspec's encoding of `chat_completion` (the dicts), on emulator
  rows and on random responses (hypothesis): texts with quotes, escapes, control characters and non-ASCII, thought
  parts, tool calls, missing candidates, any finish reason, any usage;
- an answered chat line against `_ok_line` over the dict body;
- the conversion by byte range in worker processes (`output_ranges.converted_blocks`) against the one-process
  conversion, for both files, on rows with repeats, unknown lines, malformed and failed rows, CRLF and a last row
  without its newline, cut into dozens of ranges.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import msgspec
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.emulator.storage import FakeGcsServer
from proxy.metering.ranges import RangeMeter
from proxy.openai_door.chat_response import chat_completion, chat_completion_json, unix_time
from proxy.openai_door.output_conversion import OutputLines
from proxy.openai_door.output_ranges import converted_blocks
from proxy.openai_door.vertex_rows import Response, decode_row
from proxy.providers.base import OutputObject
from tests.openai_door.support import CHAT_MODEL, chat_line, convert, emulate, jsonl

_decode_response = msgspec.json.Decoder(Response).decode
LINES = [chat_line(f"req-{n}", {"max_tokens": 3 + n % 40, "messages": [
    {"role": "user", "content": "the \"quoted\" words\n and naïve tabs\t " * (n % 7) + str(n)}]})
    for n in range(1, 121)]


def dict_body(response: Response, seed: str, created: int) -> bytes:
    """The reference: the chat.completion built as dicts, encoded by msgspec."""
    return msgspec.json.encode(chat_completion(response, model=CHAT_MODEL, seed=seed, created=created))


def test_emulator_rows_give_the_bytes_of_the_dict_body_and_line() -> None:
    converted, vertex = convert(jsonl(*LINES))
    lines = OutputLines(converted.index, model=CHAT_MODEL, batch_id="batch_fast", which="output",
                        unanswered="batch_failed")
    for row_bytes in emulate(vertex, CHAT_MODEL):
        row = decode_row(row_bytes)
        assert row.response is not None and row.request is not None and row.request.labels is not None
        line = int(row.request.labels["vbp_line"])
        seed, created = f"batch_fast\x00{line}", unix_time(row.response.createTime, row.processed_time)
        body = chat_completion(row.response, model=CHAT_MODEL, seed=seed, created=created)
        assert chat_completion_json(row.response, model_json=b'"' + CHAT_MODEL.encode() + b'"', seed=seed,
                                    created=created) == msgspec.json.encode(body)
        assert lines.chat_answer(row_bytes.rstrip(b"\n")) == (line, 0, lines._ok_line(line, row.response.responseId,
                                                                                      body))


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30) | st.sampled_from(
    ["", "\"", "\\", "\n\t\r\b\f", "\x00\x1f\x7f", "</script>", "é😀", "\u2028"])
_PART = st.fixed_dictionaries({}, optional={
    "text": _TEXT, "thought": st.booleans(),
    "functionCall": st.fixed_dictionaries({"name": _TEXT}, optional={
        "args": st.dictionaries(st.text(max_size=5), st.integers() | _TEXT, max_size=3)})})
_CANDIDATE = st.fixed_dictionaries({}, optional={
    "content": st.fixed_dictionaries({}, optional={"parts": st.lists(_PART, max_size=4)}),
    "finishReason": st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "SPII", "OTHER", "weird"]),
    "index": st.integers(0, 2**40)})
_COUNT = st.integers(0, 2**50)
_RESPONSE = st.fixed_dictionaries({}, optional={
    "candidates": st.lists(_CANDIDATE, max_size=3),
    "responseId": _TEXT,
    "modelVersion": _TEXT,
    "usageMetadata": st.fixed_dictionaries({}, optional={
        "promptTokenCount": _COUNT, "cachedContentTokenCount": _COUNT, "candidatesTokenCount": _COUNT,
        "thoughtsTokenCount": _COUNT, "toolUsePromptTokenCount": _COUNT,
        "promptTokensDetails": st.lists(st.fixed_dictionaries(
            {"modality": st.sampled_from(["AUDIO", "TEXT"]), "tokenCount": _COUNT}), max_size=2)})})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RESPONSE, st.integers(-2**40, 2**40), st.text(max_size=12))
def test_random_responses_give_the_bytes_of_the_dict_body(document: dict[str, Any], created: int, model: str) -> None:
    response = _decode_response(json.dumps(document).encode())
    seed = "batch_x\x0017"
    reference = msgspec.json.encode(chat_completion(response, model=model, seed=seed, created=created))
    assert chat_completion_json(response, model_json=msgspec.json.encode(model), seed=seed,
                                created=created) == reference


def _rows() -> tuple[Any, bytes, bytes]:
    """A chat batch's index and an output object's rows: every kind the conversion decides, many times over."""
    converted, vertex = convert(jsonl(*LINES))
    rows = emulate(vertex, CHAT_MODEL, fail=frozenset(range(0, 120, 9)))
    unknown = rows[3].replace(b'"vbp_line":"4"', b'"vbp_line":"999"').replace(b'"custom_id":"req-4"',
                                                                              b'"custom_id":"nobody"')
    broken = rows[5].replace(b'"promptTokenCount":', b'"promptTokenCount":-')
    no_label = rows[7].replace(b'"vbp_line":"8"', b'"other":"8"')
    neither = json.dumps({"custom_id": "req-11", "request": {"labels": {"vbp_line": "11"}}}).encode() + b"\n"
    data = (b"".join(rows[:40]) + rows[0] + unknown + b"not json at all\n" + broken + b"\n  \n" + neither
            + no_label.replace(b"\n", b"\r\n") + b"".join(rows[41:117]) + rows[117].rstrip(b"\n"))
    return converted.index, data, b"".join(rows[:30])


@pytest.mark.slow  # fake-gcs-server and worker processes
def test_the_conversion_by_byte_range_writes_the_bytes_of_the_one_process_conversion(fake_gcs: FakeGcsServer) -> None:
    index, data, again = _rows()
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"door-ranges-{uuid.uuid4().hex[:12]}")
    objects = []
    for name, body in {"predictions_0001.jsonl": data, "predictions_0002.jsonl": again}.items():
        blob = bucket.blob(name)
        blob.upload_from_string(body)
        blob.reload()
        objects.append(OutputObject(bucket.name, name, int(blob.generation or 0), int(blob.size or 0)))
    ranges = RangeMeter(processes=2, min_bytes=4 * 1024)  # dozens of ranges, cut inside rows
    assert sum(obj.size for obj in objects) > 20 * ranges.min_bytes  # so the conversion does go by range
    try:
        for which in ("output", "error"):
            alone, parallel = (OutputLines(index, model=CHAT_MODEL, batch_id="batch_r", which=which,  # type: ignore[arg-type]
                                           unanswered="batch_expired") for _ in range(2))
            expected = b"".join(converted_blocks(client, objects, alone))
            assert b"".join(converted_blocks(client, objects, parallel, ranges=ranges)) == expected
            counters = ("repeated", "unmatched", "malformed")
            assert [getattr(parallel, name) for name in counters] == [getattr(alone, name) for name in counters]
            # repeated: row 1 again, the broken copy of row 6, line 11 without a response, row 8 found by its
            # custom_id, and the 30 rows of the second object; unmatched: line 999 and the row that is no JSON.
            assert (alone.repeated, alone.unmatched, alone.malformed) == (34, 2, 2)
            # 117 lines answered, 14 of them by failed rows; lines 41, 119 and 120 have no row.
            custom_ids = [json.loads(line)["custom_id"] for line in expected.splitlines()]
            assert len(custom_ids) == len(set(custom_ids)) == (103 if which == "output" else 17)
            assert os.listdir(ranges.handoff.path()) == []  # every range's answers were taken, and their files gone
        # A reader that stops after the first block: the ranges under way leave no file behind once they end.
        stopped = converted_blocks(client, objects, OutputLines(index, model=CHAT_MODEL, batch_id="batch_r",
                                                                which="output", unanswered="batch_expired"),
                                   ranges=ranges)
        assert next(stopped)
        stopped.close()
        deadline = time.monotonic() + 10
        while os.listdir(ranges.handoff.path()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(ranges.handoff.path()) == []
    finally:
        ranges.close()
