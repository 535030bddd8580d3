"""The compiled row scanner (`_rowscan.scan_gemini`) held to the Python row parser, line for line.

Its contract: a line it claims must be one the Python parser reads as a succeeded Gemini row with exactly the
tokens, tier, units and modelVersion it summed; any line it cannot vouch for it leaves to Python. So every test
here compares a claim with `usage.parse_row` + `cost.row_units`, computed apart, and checks that the lines
Python would NOT read as such rows are refused.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.metering._rowscan import scan_gemini
from proxy.metering.cost import row_units
from proxy.metering.pricing import PricingTable
from proxy.providers.base import FAILED, SUCCEEDED
from proxy.providers.vertex.usage import parse_row
from tests.metering.plain_rows import figures
from tests.support.samples import SAMPLES

NO_LIMIT = 2**64 - 1
SAMPLE_LINES = (SAMPLES / "vertex-predictions.jsonl").read_bytes().splitlines()
GEMINI = PricingTable.load(Path(__file__).resolve().parents[2] / "pricing").rates_for(
    "vertex", "gemini-2.5-flash", datetime(2026, 6, 1, tzinfo=UTC))
assert GEMINI is not None


Reading = tuple[int, tuple[int, ...], str | None] | str | None


def claim(line: bytes, above: int = NO_LIMIT) -> Reading:
    """What the scanner makes of one line: (tier, rows + tokens + units, modelVersion) of a succeeded row,
    FAILED for a failed row, None when it refuses the line."""
    pos, claimed, failed, base, long_context, found = scan_gemini(line + b"\n", 0, above)
    if claimed == 0:
        assert pos == 0 and failed == 0 and base == long_context == (0,) * 13 and found == []
        return None
    assert (claimed, pos) == (1, len(line) + 1)
    if failed:
        assert failed == 1 and base == long_context == (0,) * 13 and found == []
        return FAILED
    tier, sums = (0, base) if base[0] else (1, long_context)
    assert (base if tier else long_context) == (0,) * 13
    assert len(found) <= 1 and all(count == 1 for _, count in found)
    return tier, sums, found[0][0] if found else None


def python_reading(line: bytes, above: int = NO_LIMIT) -> Reading:
    """The same from the Python parser; None when it reads neither a succeeded Gemini row nor a failed row."""
    usage = parse_row(line)
    if usage.kind == FAILED:
        return FAILED
    if usage.kind != SUCCEEDED or usage.embedding_tokens or usage.embedding_characters:
        return None
    tokens = (usage.input, usage.cached_input, usage.output, usage.reasoning, usage.tool_use_input,
              usage.audio_input, usage.audio_cached_input)
    assert GEMINI is not None
    return int(usage.input > above), (1, *tokens, *row_units(usage, GEMINI)), usage.model_version


def agrees(line: bytes, above: int = NO_LIMIT) -> bool:
    """The contract for one line: refused, or claimed with Python's very figures. True when it was claimed."""
    claimed = claim(line, above)
    if claimed is not None:
        assert claimed == python_reading(line, above), line
    return claimed is not None


def dumps(row: Any) -> bytes:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()


def row(usage: Any = None, *, response: Any = None, **members: Any) -> bytes:
    if response is None:
        response = {"candidates": [{"content": {"parts": [{"text": 'ok "x" \\ }'}]}}], "modelVersion": "m-1",
                    "usageMetadata": usage if usage is not None else {"promptTokenCount": 7}}
    return dumps({"status": "", "request": {"contents": []}, **members, "response": response})


def test_the_real_sample_rows_are_claimed() -> None:
    first, second, failed = SAMPLE_LINES
    assert claim(first) == (0, (1, 9, 0, 10, 0, 0, 0, 0, 9, 0, 0, 0, 10), "gemini-2.5-flash-lite")
    assert agrees(second)
    assert claim(failed) == FAILED


AUDIO = {"promptTokenCount": 1000, "cachedContentTokenCount": 400, "candidatesTokenCount": 5,
         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 300}, {"tokenCount": 700, "modality": "AUDIO"}],
         "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 250}, {"modality": "TEXT", "tokenCount": 150}]}

# Lines the scanner must claim, each checked against Python's own figures.
CLAIMED = [
    row({"promptTokenCount": 12, "candidatesTokenCount": 3, "thoughtsTokenCount": 4, "toolUsePromptTokenCount": 5,
         "cachedContentTokenCount": 2, "totalTokenCount": 26, "trafficType": "ON_DEMAND"}),
    row(AUDIO),
    row({"promptTokenCount": 10, "cachedContentTokenCount": 25}),  # more cached than prompt: clamped
    row({"promptTokenCount": 10, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 80}]}),  # clamped
    row({"promptTokenCount": 10, "cachedContentTokenCount": 8,
         "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 9}, {"modality": "AUDIO", "tokenCount": 1}]}),
    row({}),  # usage with no counts: a succeeded row of zero tokens
    row({"promptTokenCount": 999_999_999_999_999}),  # 15 digits
    row({"promptTokenCount": 0, "candidatesTokenCount": 0}),
    row(response={"usageMetadata": {"promptTokenCount": 3}}),  # no modelVersion
    row(response={"modelVersion": "v", "usageMetadata": {"promptTokenCount": 3}, "extra": [1.5e-7, -0.0, True]}),
    dumps({"response": {"usageMetadata": {"promptTokenCount": 3}, "modelVersion": "m"}, "status": "x"}),
    b'{ "status" : "" , "response" : { "modelVersion" : "m" , "usageMetadata" : { "promptTokenCount" : 4 } } }',
    b'{"response":{"usageMetadata":{"promptTokenCount":4},"z":"\\ud83d\\ude00 \\u00e9 \\/ \\b\\f\\n\\r\\t"}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":4,"promptTokensDetails":[]}},"request":{"a":[[],{}]}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":4}},"raw":"caf\xc3\xa9 \xff invalid UTF-8 is skipped"}',
    b'{"request":{"contents":[{"parts":[{"functionResponse":{"response":{"usageMetadata":{"promptTokenCount":9}}}}]}]}'
    b',"response":{"usageMetadata":{"promptTokenCount":4}}}',  # a nested "response" is not the row's
    b'{"response":{"usageMetadata":{"promptTokenCount":4}}}\r',  # the CR of a CRLF
    b'{"status":"Bad Request: {\\"error\\": 400}","processed_time":"x","request":{"contents":[]}}',  # failed
    b'{"request":{},"status":"\\u0000"}',  # failed: one character, spelled with an escape
    b'{"status":"x","response":{"usageMetadata":{}}}',  # a response: the status does not count
    b'{"status":"","response":{"usageMetadata":{}},"instance":{"content":"abc"}}',
]

# Lines the scanner must refuse: Python reads them as something other than a succeeded Gemini row, or as one
# in a way the scanner leaves to it (escapes in read keys or strings, duplicates, nulls, non-integer counts).
REFUSED = [
    b'{"status":"","request":{}}',  # no_usage: an empty status
    b'{"status":null,"request":{}}',
    b'{"status":3,"request":{}}',
    b'{"status":["x"]}',
    b'{"request":{}}',
    b'{"status":"caf\xc3\xa9"}',  # failed in Python, whose UTF-8 check the scanner leaves to it
    b'{"status":"\xff"}',  # malformed in Python (not UTF-8)
    b'{"status":"x","status":"y"}',
    b'{"status":"x","predictions":[]}',  # an embedding row
    b'{"predictions":[{"embeddings":{"statistics":{"token_count":3}}}],"status":""}',
    b'{"status":"x","response":null}',
    row(response={"modelVersion": "m"}),  # no usageMetadata: no_usage
    row(response={"usageMetadata": None}),
    b'{"status":"","response":null}',
    row({"promptTokenCount": None}),
    row({"promptTokenCount": 1.0}),
    row({"promptTokenCount": -1}),
    b'{"response":{"usageMetadata":{"promptTokenCount":-0}}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":1e3}}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":01}}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":"7"}}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":true}}}',
    row({"promptTokenCount": 1_000_000_000_000_000}),  # 16 digits
    b'{"response":{"usageMetadata":{"promptTokenCount":4,"promptTokenCount":5}}}',
    b'{"response":{"usageMetadata":{"promptTokenCount":4}},"response":{"usageMetadata":{}}}',
    b'{"response":{"modelVersion":"a","modelVersion":"b","usageMetadata":{}}}',
    b'{"response":{"usageMetadata":{"prompt\\u0054okenCount":4}}}',  # promptTokenCount, escaped
    b'{"respons\\u0065":{"usageMetadata":{"promptTokenCount":4}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":[{"modality":"\\u0041UDIO","tokenCount":4}]}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":[{"modality":"AUDIO","tokenCount":4,"tokenCount":1}]}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":[{"modality":null,"tokenCount":4}]}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":[{"modality":7}]}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":[4]}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":{}}}}',
    b'{"response":{"usageMetadata":{"promptTokensDetails":null}}}',
    b'{"response":{"modelVersion":"caf\xc3\xa9","usageMetadata":{}}}',
    b'{"response":{"modelVersion":"a\\"b","usageMetadata":{}}}',
    b'{"response":{"modelVersion":null,"usageMetadata":{}}}',
    b'{"response":{"modelVersion":3,"usageMetadata":{}}}',
    b'{"response":{"usageMetadata":[]}}',
    b'{"response":[]}',
    b'{"response":{}}',
    b'{}',
    b'[]',
    b'',
    b'  {"response":{"usageMetadata":{}}}',
    b'{"response":{"usageMetadata":{}}}  ',
    b'\xef\xbb\xbf{"response":{"usageMetadata":{}}}',
    b'{"response":{"usageMetadata":{}}}}',
    b'{"response":{"usageMetadata":{}},}',
    b'{"response":{"usageMetadata":{"promptTokenCount":4,}}}',
    b'{"a":[1,],"response":{"usageMetadata":{}}}',
    b'{"a":01,"response":{"usageMetadata":{}}}',
    b'{"a":1.,"response":{"usageMetadata":{}}}',
    b'{"a":.5,"response":{"usageMetadata":{}}}',
    b'{"a":+1,"response":{"usageMetadata":{}}}',
    b'{"a":1e,"response":{"usageMetadata":{}}}',
    b'{"a":NaN,"response":{"usageMetadata":{}}}',
    b'{"a":tru,"response":{"usageMetadata":{}}}',
    b'{"a":nul,"response":{"usageMetadata":{}}}',
    b'{"a":"\\x","response":{"usageMetadata":{}}}',
    b'{"a":"\\u12g4","response":{"usageMetadata":{}}}',
    b'{"a":"\\ud800","response":{"usageMetadata":{}}}',
    b'{"a":"\\ud800\\u0041","response":{"usageMetadata":{}}}',
    b'{"a":"\\udc00","response":{"usageMetadata":{}}}',
    b'{"a":"tab\there","response":{"usageMetadata":{}}}',
    b'{"a":"unterminated,"response":{"usageMetadata":{}}}',
    b'{"a" "b","response":{"usageMetadata":{}}}',
    b'{a:1,"response":{"usageMetadata":{}}}',
    b'{"a":1 "response":{"usageMetadata":{}}}',
    b'{"a":\x0c1,"response":{"usageMetadata":{}}}',
    b'{"a":' + b"[" * 70 + b"]" * 70 + b',"response":{"usageMetadata":{}}}',  # deeper than the scanner goes
]


@pytest.mark.parametrize("line", CLAIMED, ids=range(len(CLAIMED)))
def test_claimed_lines_carry_pythons_figures(line: bytes) -> None:
    assert python_reading(line) is not None
    assert agrees(line)


@pytest.mark.parametrize("line", REFUSED, ids=range(len(REFUSED)))
def test_refused_lines_are_left_to_python(line: bytes) -> None:
    assert claim(line) is None


VALID_ESCAPES = [b'\\"', b"\\\\", b"\\n", b"\\/", b"\\u00e9", b"\\ud83d\\ude00", b"\\\\\\\"", b"\xc3\xa9"]
BROKEN_ESCAPES = [b'"', b"\\", b"\t", b"\n", b"\\x", b"\\u12", b"\\ud83d", b"\\\\\\"]


@pytest.mark.parametrize("escape", VALID_ESCAPES + BROKEN_ESCAPES, ids=range(16))
def test_escapes_at_every_offset_of_long_strings(escape: bytes) -> None:
    """Strings are read many bytes at a time: put each escape (and each broken one, which makes the line invalid
    JSON) at every offset of a long string, the row itself shifted by every amount, in a key and in a value."""
    for shift in range(0, 33, 4):
        for at in range(0, 141):
            text = b"a" * at + escape + b"z" * (140 - at)
            line = (b'{"pad":"' + b"p" * shift + b'","request":{"t":"' + text + b'","' + text
                    + b'":[1]},"response":{"usageMetadata":{"promptTokenCount":7}}}')
            assert agrees(line) == (escape in VALID_ESCAPES), (escape, shift, at)


def test_every_escape_of_a_block_is_checked() -> None:
    """The first three escapes of a 64-byte block are checked without a branch each and the rest by a loop: a
    broken escape (or a `\\u` one, left to the slow path) is found whichever of up to seven escapes it is."""
    for count in range(1, 8):
        for broken in range(count):
            for odd, valid in ((b"\\x", False), (b"\\u00e9", True)):
                for gap in (0, 3, 7):
                    escapes = [b"\\n"] * count
                    escapes[broken] = odd
                    text = b"a" * 5 + (b"b" * gap).join(escapes) + b"z" * 90
                    line = (b'{"request":{"t":"' + text + b'"},"response":{"usageMetadata":{"promptTokenCount":7}}}')
                    assert agrees(line) == valid, (count, broken, odd, gap)


def test_the_tier_is_decided_per_line() -> None:
    line = row({"promptTokenCount": 200_001, "cachedContentTokenCount": 1})
    assert claim(line, 200_000)[0] == 1  # type: ignore[index]
    assert claim(line, 200_001)[0] == 0  # type: ignore[index]
    assert agrees(line, 200_000) and agrees(line, 200_001)


def test_a_run_stops_at_the_first_refused_line_and_at_an_unfinished_one() -> None:
    good = row({"promptTokenCount": 5, "candidatesTokenCount": 2})
    embedding = b'{"predictions":[{"embeddings":{"statistics":{"token_count":3}}}],"status":""}'
    text = b"\n".join([good, SAMPLE_LINES[2], good + b"\r", embedding, good, good])  # the last has no newline
    pos, claimed, failed, base, _, found = scan_gemini(text, 0, NO_LIMIT)
    assert (claimed, failed, pos) == (3, 1, text.index(embedding))
    assert base[:4] == (2, 10, 0, 4) and found == [("m-1", 2)]
    after = text.index(b"\n", pos) + 1
    pos, claimed, failed, _, _, _ = scan_gemini(text, after, NO_LIMIT)
    assert (claimed, failed, pos) == (1, 0, after + len(good) + 1)
    with pytest.raises(ValueError):
        scan_gemini(text, len(text) + 1, NO_LIMIT)


def test_sums_never_wrap_a_run_ends_before() -> None:
    big = row({"promptTokenCount": 999_999_999_999_999, "candidatesTokenCount": 999_999_999_999_999})
    text = (big + b"\n") * 10_000  # 10^19 tokens in all: more than 64 bits hold
    pos, total, rows = 0, 0, 0
    while pos < len(text):
        pos, claimed, _, base, _, _ = scan_gemini(text, pos, NO_LIMIT)
        assert claimed > 0 and base[1] < 2**63
        rows += claimed
        total += base[1]
    assert rows == 10_000 and total == 10_000 * 999_999_999_999_999


def test_many_model_versions_end_a_run_without_losing_a_row() -> None:
    lines = [row(response={"modelVersion": f"v{index % 40}", "usageMetadata": {"promptTokenCount": 1}})
             for index in range(200)]
    text = b"\n".join(lines) + b"\n"
    counts: dict[str, int] = {}
    pos = rows = 0
    while pos < len(text):
        pos, claimed, _, _, _, found = scan_gemini(text, pos, NO_LIMIT)
        assert claimed > 0 and len(found) <= 16
        rows += claimed
        for version, count in found:
            counts[version] = counts.get(version, 0) + count
    assert rows == 200 and counts == {f"v{index}": 5 for index in range(40)}


def _valid_rows() -> list[bytes]:
    rng = random.Random("rowscan")
    rows = [*SAMPLE_LINES[:2], *CLAIMED]
    for _ in range(40):
        usage: dict[str, Any] = {"promptTokenCount": rng.randrange(0, 10**6),
                                 "candidatesTokenCount": rng.randrange(0, 10**4),
                                 "promptTokensDetails": [{"modality": rng.choice(["TEXT", "AUDIO", "IMAGE"]),
                                                          "tokenCount": rng.randrange(0, 10**6)}]}
        if rng.random() < 0.5:
            usage["cachedContentTokenCount"] = rng.randrange(0, 10**6)
            usage["cacheTokensDetails"] = [{"modality": "AUDIO", "tokenCount": rng.randrange(0, 10**6)}]
        rows.append(row(usage))
    return rows


VALID_ROWS = _valid_rows()
SEEDS = [*VALID_ROWS, *REFUSED]  # rows to mutate: a broken one may be mended by an edit


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.binary(
    min_size=0, max_size=3) | st.sampled_from([b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\\u", b"-", b"0",
                                               b"e", b"null", b'"AUDIO"', b'"response":', b'"usageMetadata":{'])),
    min_size=1, max_size=4))
def test_a_mutated_line_is_refused_or_read_as_python_reads_it(line: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    """Cut, insert and overwrite bytes anywhere in real rows: whatever the scanner claims, Python agrees with."""
    for at, removed, inserted in edits:
        at %= len(line) + 1
        line = line[:at] + inserted + line[at + removed:]
    line = line.replace(b"\n", b" ")
    agrees(line)
    agrees(line, 500)


def test_the_valid_rows_are_all_claimed() -> None:
    """So that the agreement above is not vacuous: the scanner does claim the rows it is meant for."""
    assert all(agrees(line) for line in VALID_ROWS)
    assert claim(SAMPLE_LINES[2]) == FAILED


@pytest.mark.parametrize("make", [bytearray, lambda data: memoryview(bytes(data))])
def test_the_accelerator_takes_bytes_only(make: Any) -> None:
    """It reads without the GIL: a mutable buffer could change under it, so only immutable `bytes` are taken."""
    line = json.dumps({"response": {"usageMetadata": {"promptTokenCount": 3}}}).encode() + b"\n"
    with pytest.raises(TypeError):
        scan_gemini(make(line), 0, 2**64 - 1)
    assert scan_gemini(line, 0, 2**64 - 1)[1] == 1


FALLBACK = r"""
import json, logging, sys
sys.modules["proxy.metering._rowscan"] = None  # as if the extension was never built
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
from proxy.providers.vertex import scanner
scanner.warn_if_pure_python()
scanner.warn_if_pure_python()
from tests.metering.plain_rows import figures
print(json.dumps({"native": scanner.NATIVE, "figures": figures()}))
"""


def test_without_the_extension_python_reads_every_line_alike() -> None:
    """A build without a C compiler meters with the same figures, and says once that it is the slow path."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", FALLBACK], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"native": False, "figures": figures()}
    warnings = [line for line in done.stderr.splitlines() if "compiled row scanner" in line]
    assert len(warnings) == 1 and warnings[0].startswith("proxy.metering WARNING"), done.stderr
