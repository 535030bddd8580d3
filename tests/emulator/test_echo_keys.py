"""The emulator's rows echo the sibling keys of an input line (e.g. `custom_id`) unless told not to, so the OpenAI
door's custom_id mapping is tested both ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from proxy.emulator.predictions import RowMaker

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LINE = json.dumps({"custom_id": "request-1", "request": {
    "contents": [{"role": "user", "parts": [{"text": "Hello world!"}]}],
    "labels": {"line": "1"}}}).encode()


@pytest.mark.parametrize("echo", [True, False])
def test_a_good_row_echoes_siblings_only_when_asked(echo: bool) -> None:
    row, ok = RowMaker(model="gemini-2.5-flash-lite", job_id="1", echo_keys=echo).row(LINE, 0, now=NOW)
    parsed = json.loads(row)
    assert ok is True
    assert ("custom_id" in parsed) is echo
    assert parsed.get("custom_id", "request-1") == "request-1"
    assert parsed["request"]["labels"] == {"line": "1"}  # the request itself is always echoed


@pytest.mark.parametrize("echo", [True, False])
def test_a_failed_row_echoes_siblings_only_when_asked(echo: bool) -> None:
    row, ok = RowMaker(model="gemini-2.5-flash-lite", job_id="1", echo_keys=echo).row(LINE, 0, now=NOW, fail=True)
    parsed = json.loads(row)
    assert ok is False
    assert sorted(parsed) == (["custom_id"] if echo else []) + ["processed_time", "request", "status"]
