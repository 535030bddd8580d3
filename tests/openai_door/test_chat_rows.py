"""The compiled chat output path (`_chatrows.answer_rows`) held to the Python reference (`OutputLines.chat_answer`).

An `OutputLines` with `compiled = False` answers every row in Python; with the compiled path on, the common rows are
answered in C and the rest handed back. The two must write the very same bytes and count the same rows, for the
output and the error file, on:
- the emulator's rows (with and without echoed sibling keys, with failed, repeated, unknown, malformed rows, CRLF
  and a last row without its newline), fed in chunks cut anywhere, where C must answer every plain succeeded row;
- the shared sample rows (tests/data/vertex-predictions.jsonl), which carry no line label (Python finds nothing for
  them) and, with one added, are answered in C;
- random rows (hypothesis): texts with escapes, `\\/`, `\\uXXXX` and surrogate pairs, non-ASCII, thought parts,
  tool calls, any finish reason and usage, null fields, times in many forms (valid, invalid, with offsets and
  fractions), labels valid and not, keys in any order, long or non-ASCII batch ids, models and custom_ids.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.openai_door import output_conversion
from proxy.openai_door._chatrows import answer_rows
from proxy.openai_door.line_index import LineIndex, LineIndexBuilder
from proxy.openai_door.output_conversion import OutputLines
from tests.openai_door.support import CHAT_MODEL, chat_line, convert, emulate, jsonl
from tests.openai_door.test_output_fast_path import _CANDIDATE, _COUNT, _TEXT, _rows
from tests.support.samples import SAMPLES

COUNTERS = ("repeated", "unmatched", "malformed")


def both_paths(index: LineIndex, data: bytes, which: str, *, model: str = CHAT_MODEL, batch_id: str = "batch_c",
               cuts: list[int] | None = None) -> tuple[tuple[bytes, list[int]], tuple[bytes, list[int]]]:
    """(bytes, counters) of the reference and of the compiled path, each fed `data` cut at `cuts`."""
    results = []
    for compiled in (False, True):
        lines = OutputLines(index, model=model, batch_id=batch_id, which=which,  # type: ignore[arg-type]
                            unanswered="batch_expired")
        assert lines.compiled  # built with the package
        lines.compiled = compiled
        out, at = [], 0
        for cut in sorted(cuts or []) + [len(data)]:
            out.append(lines.feed(data[at:cut]))
            at = cut
        out.append(lines.close())
        results.append((b"".join(out), [getattr(lines, name) for name in COUNTERS]))
    return results[0], results[1]


def claimed_by_c(index: LineIndex, data: bytes) -> int:
    """How many rows of `data` the compiled path answers itself (each row it leaves is skipped, as Python takes it)."""
    ids, ends = index.custom_id_table()
    pos = count = 0
    while pos < len(data):
        pos, lines, _, _ = answer_rows(data, pos, len(data), 0, ids, ends, b'"m"', b"batch_c", True)
        count += len(lines) // 8
        newline = data.find(b"\n", pos)
        pos = len(data) if newline < 0 else newline + 1
    return count


def _index(custom_ids: list[str]) -> LineIndex:
    builder = LineIndexBuilder("chat")
    for custom_id in custom_ids:
        builder.add(custom_id)
    return builder.build()


def test_the_emulator_rows_are_answered_in_c_with_the_bytes_of_the_reference() -> None:
    lines = [chat_line(f"req-{n}", {"max_tokens": 2 + n % 30, "messages": [
        {"role": "user", "content": "tabs\t, \"quotes\", naïve é 😀 and \\ " * (n % 5) + str(n)}]})
        for n in range(1, 61)]
    converted, vertex = convert(jsonl(*lines))
    data = b"".join(emulate(vertex, CHAT_MODEL))
    assert claimed_by_c(converted.index, data) == 60  # every row: none of the emulator's rows is left to Python
    rng = random.Random(5)
    for which in ("output", "error"):
        reference, compiled = both_paths(converted.index, data, which, cuts=[rng.randrange(len(data)) for _ in
                                                                            range(25)])
        assert compiled == reference
        assert reference[0].count(b"\n") == (60 if which == "output" else 0)


def test_rows_of_every_kind_give_the_bytes_and_counters_of_the_reference() -> None:
    index, data, again = _rows()  # repeats, unknown lines, malformed and failed rows, CRLF, no last newline
    data = data + b"\n" + again
    for which in ("output", "error"):
        for cuts in ([], [1, 2, 700, len(data) // 2], list(range(0, len(data), 4093))):
            reference, compiled = both_paths(index, data, which, cuts=cuts)
            assert compiled == reference
            assert reference[1] == [34, 2, 2]  # as test_output_fast_path counts the same rows


def test_rows_without_echoed_sibling_keys() -> None:
    converted, vertex = convert(jsonl(*[chat_line(f"id-{n}") for n in range(1, 11)]))
    data = b"".join(emulate(vertex, CHAT_MODEL)).replace(b'"custom_id":', b'"ignored":')
    assert claimed_by_c(converted.index, data) == 10
    reference, compiled = both_paths(converted.index, data, "output")
    assert compiled == reference and reference[0].count(b'"custom_id":"id-') == 10


def test_the_shared_sample_rows() -> None:
    """Vertex's own rows carry no line label: Python finds none; with one added, C answers them the same way."""
    data = (SAMPLES / "vertex-predictions.jsonl").read_bytes()
    index = _index(["first", "second", "third"])
    assert claimed_by_c(index, data) == 0
    reference, compiled = both_paths(index, data, "error")
    assert compiled == reference and reference[1] == [0, 3, 0]
    labelled = b"".join(row.replace(b'"request":{', b'"request":{"labels":{"vbp_line":"%d"},' % (at + 1), 1)
                        for at, row in enumerate(data.splitlines(keepends=True)))
    assert claimed_by_c(index, labelled) == 2  # the two succeeded rows; the failed row is Python's
    for which in ("output", "error"):
        reference, compiled = both_paths(index, labelled, which)
        assert compiled == reference
    assert b'"custom_id":"first"' in reference[0] or b'"custom_id":"third"' in reference[0]
    out, _ = both_paths(index, labelled, "output")[1]
    assert [json.loads(line)["response"]["body"]["created"] for line in out.splitlines()] == [1758317387] * 2


_MOMENT = st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2201, 1, 2))


@st.composite
def _time(draw: st.DrawFn) -> str | None:
    """Times in the forms C reads and in many it leaves to Python."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.sampled_from(["", "yesterday", "2026-02-29T00:00:00Z", "2024-02-29T23:59:59Z",
                                     "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z",
                                     "2026-01-01T00:00:00.Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00+0100",
                                     "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00", "2026-01-01T00:00:00ZZ"]))
    text = draw(_MOMENT).strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 10))
    if digits:
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits)))
    zone = draw(st.sampled_from(["Z", "+00:00", "-07:30", "+14:00", "+23:59", ""]))
    return text + zone


_LABEL = st.integers(-1, 12).map(str) | st.sampled_from(["", "007", "x", "\u0661", "3 ", "99999999999", "1.0"])
_PARTS = st.lists(st.fixed_dictionaries({}, optional={"text": _TEXT | st.none(), "thought": st.booleans() | st.none()}),
                  max_size=4)
_PLAIN_CANDIDATE = st.fixed_dictionaries({}, optional={
    "content": st.fixed_dictionaries({}, optional={"parts": _PARTS | st.none(), "role": st.just("model")}) | st.none(),
    "finishReason": st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "SPII", "", "weird", "\u00e9"]) | st.none(),
    "index": st.integers(0, 2**40) | st.none(),
    "avgLogprobs": st.floats(allow_nan=False, allow_infinity=False)})
_USAGE = st.fixed_dictionaries({}, optional={
    "promptTokenCount": _COUNT, "cachedContentTokenCount": _COUNT, "candidatesTokenCount": _COUNT,
    "thoughtsTokenCount": _COUNT, "toolUsePromptTokenCount": _COUNT, "totalTokenCount": _COUNT,
    "promptTokensDetails": st.lists(st.fixed_dictionaries(
        {"modality": st.sampled_from(["AUDIO", "TEXT"]), "tokenCount": _COUNT}), max_size=2),
    "cacheTokensDetails": st.lists(st.fixed_dictionaries(
        {"modality": st.sampled_from(["AUDIO", "TEXT"]), "tokenCount": _COUNT}), max_size=2)})


@st.composite
def _row(draw: st.DrawFn) -> dict[str, Any]:
    response = draw(st.fixed_dictionaries({}, optional={
        "candidates": st.lists(_PLAIN_CANDIDATE | _CANDIDATE, max_size=3) | st.none(),
        "createTime": _time(), "responseId": _TEXT | st.none(), "modelVersion": _TEXT | st.none(),
        "usageMetadata": _USAGE | st.none()}))
    labels = draw(st.dictionaries(st.sampled_from(["team", "vbp_line", "x"]), _LABEL | _TEXT, max_size=3))
    row = draw(st.fixed_dictionaries({"request": st.just({"contents": [{"role": "user", "parts": [
        {"text": "hi/there"}]}], "labels": labels})}, optional={
        "custom_id": _TEXT, "status": st.sampled_from(["", "boom"]), "processed_time": _time(),
        "response": st.just(response)}))
    keys = draw(st.permutations(list(row)))
    return {key: row[key] for key in keys}


def _dumps(draw: st.DrawFn, row: dict[str, Any]) -> bytes:
    text = json.dumps(row, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    if draw(st.booleans()):
        text = text.replace("/", "\\/")  # '/' only occurs inside strings: still the same JSON
    return text.encode() + draw(st.sampled_from([b"\n", b"\r\n", b" \n"]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_rows_give_the_bytes_of_the_reference(data: st.DataObject) -> None:
    custom_ids = data.draw(st.lists(st.text(min_size=1, max_size=12), min_size=10, max_size=10, unique=True))
    rows = data.draw(st.lists(_row(), min_size=1, max_size=6))
    buf = b"".join(_dumps(data.draw, row) for row in rows)
    model = data.draw(st.text(max_size=8))
    batch_id = data.draw(st.sampled_from(["batch_x", "b" * 150, "bätch_\u2028"]))
    cuts = data.draw(st.lists(st.integers(0, len(buf)), max_size=3))
    for which in ("output", "error"):
        reference, compiled = both_paths(_index(custom_ids), buf, which, model=model, batch_id=batch_id, cuts=cuts)
        assert compiled == reference


def test_times_agree_with_python_on_many_random_moments() -> None:
    """`created` read in C against `unix_time` on 2,000 random times (fractions of 0 to 9 digits, offsets)."""
    rng = random.Random(11)
    index = _index(["a"])
    template = ('{"request":{"labels":{"vbp_line":"1"}},"response":{"createTime":"%s","candidates":[]}}\n')
    for _ in range(2000):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(2**52))
        text = moment.strftime("%Y-%m-%dT%H:%M:%S") + "." + str(rng.randrange(10**9)).zfill(9)[:rng.randint(1, 9)]
        text += rng.choice(["Z", "+05:30", "-11:59"])
        row = (template % text).encode()
        assert claimed_by_c(index, row) == 1
        reference, compiled = both_paths(index, row, "output")
        assert compiled == reference


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"])
def test_invalid_utf8_in_a_text_is_left_to_python(bad: bytes) -> None:
    index = _index(["a"])
    row = (b'{"request":{"labels":{"vbp_line":"1"}},"response":{"candidates":[{"content":{"parts":[{"text":"x'
           + bad + b'"}]}}]}}\n')
    assert claimed_by_c(index, row) == 0
    reference, compiled = both_paths(index, row, "error")
    # msgspec refuses the row, and its generic parse too: the row is malformed, its line unfound and unanswered
    assert compiled == reference and reference[1] == [0, 1, 1]
    assert json.loads(reference[0])["error"]["code"] == "batch_expired"


def test_without_the_compiled_module_every_row_is_answered_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    index, data, _ = _rows()
    reference, _ = both_paths(index, data, "output")
    monkeypatch.setattr(output_conversion, "answer_rows", None)
    lines = OutputLines(index, model=CHAT_MODEL, batch_id="batch_c", which="output", unanswered="batch_expired")
    assert not lines.compiled
    assert lines.feed(data) + lines.close() == reference[0]
