"""The compiled line scanner of the estimate (`_estscan.scan_requests`) held to the pure-Python path.

Its contract: the figures of an input are the same whichever path read it. So every test here estimates the same
bytes twice, once with the scanner (`native=True`) and once with msgspec alone (`native=False`), and compares
every figure; and the direct tests check that a text's tokens are `tokens.text_tokens` of the decoded text and
that the common lines are claimed at all (else the tests would compare Python with itself). The scanner's text
loop has a version per SIMD instruction set (`simd_paths()`: AVX2 where the CPU has it, SSE2 on every x86-64):
every test here runs once with each this machine can run.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.budgets._estscan import scan_requests, simd_paths, use_simd
from proxy.budgets.estimate import Estimate, LineEstimator
from proxy.budgets.tokens import text_tokens
from proxy.metering.pricing import PricingTable, Rates
from tests.support import fuzzing

NOW = datetime(2026, 11, 30, tzinfo=UTC)
NO_LIMIT = 2**64 - 1
MAX_OUTPUT = 65_536


@pytest.fixture(scope="module", params=simd_paths(), autouse=True)
def simd_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test once per version of the text loop; the best one is put back after (it is the one loaded)."""
    use_simd(request.param)
    yield request.param
    use_simd(simd_paths()[0])


@pytest.fixture(scope="module")
def rates() -> Rates:
    """gemini-2.5-pro with its long-context tier moved down to 20 tokens, so that short lines reach it too."""
    found = PricingTable.load().rates_for("vertex", "gemini-2.5-pro", NOW)
    assert found is not None and found.long_context is not None
    return dataclasses.replace(found, long_context=dataclasses.replace(found.long_context, above_prompt_tokens=20))


def both(rates: Rates, data: bytes, *, chunk: int = 1 << 20) -> tuple[Estimate, Estimate]:
    """The estimate of `data` by the scanner and by msgspec alone, fed in chunks of `chunk` bytes."""
    found = []
    for native in (True, False):
        estimator = LineEstimator(rates, max_output=MAX_OUTPUT, native=native)
        assert estimator.native is native
        for at in range(0, len(data), chunk):
            estimator.feed(data[at:at + chunk])
        found.append(estimator.close())
    return found[0], found[1]


def agree(rates: Rates, data: bytes, *, chunk: int = 1 << 20) -> Estimate:
    native, python = both(rates, data, chunk=chunk)
    assert native.to_json() == python.to_json(), data[:2000]
    assert (native.low_pico, native.high_pico) == (python.low_pico, python.high_pico)
    return native


def claimed(data: bytes, above: int = NO_LIMIT) -> tuple[int, tuple[int, int, int], tuple[int, int, int]]:
    return scan_requests(data, 0, len(data), above, MAX_OUTPUT)


def plain_lines(size: int, seed: int = 17) -> bytes:
    """About `size` bytes of the common lines: a text part of 50-400 words and an output cap (as bench/budgets.py)."""
    rng = random.Random(seed)
    words = "the quick brown fox jumps over a lazy dog, while batch jobs spend money!".split()
    out: list[bytes] = []
    while sum(map(len, out)) < size:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 400)))
        out.append(json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": text}]}],
                                           "generationConfig": {"maxOutputTokens": rng.choice([256, 8192])}}})
                   .encode() + b"\n")
    return b"".join(out)


def text_line(text: str, *, ensure_ascii: bool = True) -> bytes:
    line = {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}]}}
    return json.dumps(line, ensure_ascii=ensure_ascii).encode() + b"\n"


# -- the text rule ---------------------------------------------------------------------------------------------

@given(st.text(), st.booleans())
@settings(max_examples=400, deadline=None)
def test_a_texts_tokens_are_the_rule_of_tokens_py(rates: Rates, text: str, ensure_ascii: bool) -> None:
    """Escapes decoded (\\n, \\", \\u00e9, surrogate pairs), UTF-8 as it is: the count of the decoded text."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):  # only JSON's escapes can carry a surrogate
        if ensure_ascii:
            agree(rates, text_line(text))  # a lone one is left to Python, a pair is one character
        return
    line = text_line(text, ensure_ascii=ensure_ascii)
    assert claimed(line) == (len(line), (1, text_tokens(text), MAX_OUTPUT), (0, 0, 0))


@pytest.mark.parametrize("text, tokens", [
    ("Hello world!", 3), ("You are a helpful assistant.", 6), ("", 0), ("a\nb\tc\rd\fe", 5), ('say "hi"', 4),
    ("\b\x00\x7f", 3), ("naïve café, 42", 4), ("日本語のテキスト", 1), ("😀 x", 2), ("a/b\\c", 5), ("x" * 200, 1),
    ("a " * 100 + "!", 101), ("_under_score_ 99", 2), ("\x0b\x1c\x1f", 0),
])
def test_known_texts(text: str, tokens: int) -> None:
    assert text_tokens(text) == tokens
    for ensure_ascii in (True, False):
        line = text_line(text, ensure_ascii=ensure_ascii)
        assert claimed(line) == (len(line), (1, tokens, MAX_OUTPUT), (0, 0, 0))


def test_the_64_byte_blocks_agree_with_the_byte_loop_at_every_offset() -> None:
    """Texts of every length around the block size, word runs and stops at every position, a run across blocks."""
    rng = random.Random(5)
    alphabet = "ab _-.,é\\\"\n日"
    for size in range(0, 200):
        text = "".join(rng.choice(alphabet) for _ in range(size))
        for ensure_ascii in (True, False):
            line = text_line(text, ensure_ascii=ensure_ascii)
            assert claimed(line) == (len(line), (1, text_tokens(text), MAX_OUTPUT), (0, 0, 0)), text


# -- which lines are claimed ---------------------------------------------------------------------------------

def test_the_common_lines_are_claimed(rates: Rates) -> None:
    """The benchmark's lines (text parts, a cap): every one claimed, with msgspec's very figures."""
    data = plain_lines(300_000)
    pos, base, long = claimed(data, above=1_000_000)
    assert pos == len(data) and long == (0, 0, 0)
    assert base[0] == data.count(b"\n")
    assert agree(rates, data).lines == base[0]


@pytest.mark.parametrize("line", [
    b'{"request": {"contents": [{"parts": [{"text": "a"}]}], "cachedContent": "projects/p/cachedContents/1"}}',
    b'{"request": {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]}}',
    b'{"request": {"contents": [{"parts": [{"text": "a", "file_data": {"mimeType": "video/mp4"}}]}]}}',
    b'{"content": "an embedding instance", "request": {}}',
    b'{"request": {"contents": [{"parts": [{"text": null}]}]}}',
    b'{"request": {"contents": [], "generationConfig": {"maxOutputTokens": -5}}}',
    b'{"request": {"contents": [], "generationConfig": {"maxOutputTokens": 1.5}}}',
    b'{"request": {"contents": [], "generationConfig": {"maxOutputTokens": 1234567890123456}}}',
    b'{"request": {"contents": [{"parts": [{"text": "\\ud800 lone"}]}]}}',
    b'{"request": {"contents": [{"parts": [{"text": "bad \xff utf-8"}]}]}}',
    b'{"request": {"contents": [{"parts": [{"text": "a"}]}]}, "request": {}}',
    b'{"req\\u0075est": {"contents": []}}',
    b'{"other": 1}',
    b' {"request": {}}',
    b'{"request": {}} x',
    b'{"request": {"contents": [{"parts": [{"text": "cut',
    b"",
    b"   ",
])
def test_lines_the_scanner_leaves_to_python(rates: Rates, line: bytes) -> None:
    assert claimed(line + b"\n")[0] == 0
    agree(rates, line + b"\n")


def test_lines_it_claims_beside_ones_it_leaves(rates: Rates) -> None:
    """The scanner stops at a line it leaves, Python reads that one, the scanner resumes after it."""
    lines = [text_line("first line"), b'{"request": {"contents": [], "cachedContent": "c"}}\n', text_line("third"),
             b"not json\n", b"\n", text_line("after a blank")]
    data = b"".join(lines)
    assert claimed(data)[0] == len(lines[0])
    found = agree(rates, data)
    assert (found.lines, found.malformed) == (5, 1)  # a blank line is no line; "not json" is malformed


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_requests_estimate_the_same_either_way(rates: Rates, data: st.DataObject) -> None:
    """Requests of every shape the estimate reads (both spellings, caps, nulls, media, caches, extra keys)."""
    text = st.text(max_size=40)
    part = st.one_of(st.fixed_dictionaries({"text": text}), st.just({"text": None}), st.just({}),
                     st.fixed_dictionaries({"text": text, "thought": st.booleans()}),
                     st.just({"inlineData": {"mimeType": "image/png", "data": "AAAA"}}),
                     st.just({"fileData": {"mimeType": "audio/wav", "fileUri": "gs://b/a.wav"}}))
    content = st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "model"]),
                                                  "parts": st.lists(part, max_size=3)})
    cap = st.one_of(st.integers(-3, 70_000), st.none(), st.just(1.0), st.just("5"))
    generation = st.fixed_dictionaries({}, optional={"maxOutputTokens": cap, "max_output_tokens": cap,
                                                     "temperature": st.just(0.5)})
    request = st.fixed_dictionaries({}, optional={
        "contents": st.one_of(st.lists(content, max_size=3), st.none()),
        "systemInstruction": st.one_of(content, st.none()), "system_instruction": content,
        "generationConfig": generation, "generation_config": generation,
        "cachedContent": st.sampled_from(["c", "", None]), "labels": st.dictionaries(st.text(max_size=5), text)})
    line = st.fixed_dictionaries({}, optional={"request": st.one_of(request, st.none(), st.just([])),
                                               "key": text, "content": st.sampled_from(["x", None])})
    chosen = data.draw(st.lists(line, min_size=1, max_size=6))
    ending = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    indent = data.draw(st.sampled_from([None, 1]))
    payload = b"".join(json.dumps(item, indent=indent).replace("\n", " ").encode() + ending for item in chosen)
    agree(rates, payload, chunk=data.draw(st.sampled_from([7, 64, 1 << 20])))


_PIECES = [b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b"\r", b"\x00", b"\xff", b"\\u", b"\xc3\xa9",
           b"null", b'"text"', b'"request"', b'"maxOutputTokens": 9', b"-", b"1e5"]


def mutate(rng: random.Random, line: bytes) -> bytes:
    """One to four random edits of a line (byte flips, JSON-ish inserts, deletes), newlines kept out."""
    return fuzzing.mutate(rng, line, _PIECES)


SEEDS = [
    text_line("Hello world! How are you?"),
    text_line("naïve — “quoted” 😀", ensure_ascii=False),
    text_line("naïve — “quoted” 😀\n\ttab", ensure_ascii=True),
    b'{"custom_id": "a", "request": {"systemInstruction": {"parts": [{"text": "Be brief."}]}, "contents": [{"role":'
    b' "user", "parts": [{"text": "Why?"}, {"text": "And how?"}]}], "generationConfig": {"maxOutputTokens": 512,'
    b' "temperature": 0.2}}}\n',
    b'{"request": {"system_instruction": {"parts": [{"text": "x"}]}, "generation_config": {"max_output_tokens": 0}}}\n',
]


def test_mutated_lines_estimate_the_same_either_way(rates: Rates) -> None:
    """Broken and mended lines at random (the same edits `make fuzz` runs for longer)."""
    rng = random.Random(14)
    for _ in range(1500):
        data = b"".join(mutate(rng, rng.choice(SEEDS)) + b"\n" for _ in range(rng.randint(1, 3)))
        agree(rates, data, chunk=rng.choice([5, 1 << 20]))


def test_the_scanner_takes_bytes_only() -> None:
    """It reads without the GIL: a mutable buffer could change under it."""
    with pytest.raises(TypeError):
        scan_requests(bytearray(text_line("a")), 0, 10, NO_LIMIT, MAX_OUTPUT)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scan_requests(text_line("a"), 5, 2, NO_LIMIT, MAX_OUTPUT)
    with pytest.raises(ValueError):
        scan_requests(text_line("a"), 0, 10_000, NO_LIMIT, MAX_OUTPUT)


FALLBACK = r"""
import json, sys
sys.modules["proxy.budgets._estscan"] = None  # as if the extension was never built
from proxy.budgets import estimate
from proxy.metering.pricing import PricingTable
from datetime import UTC, datetime
rates = PricingTable.load().rates_for("vertex", "gemini-2.5-flash", datetime(2026, 11, 30, tzinfo=UTC))
estimator = estimate.LineEstimator(rates, max_output=65536)
estimator.feed(sys.stdin.buffer.read())
print(json.dumps({"native": estimate.NATIVE, "estimator": estimator.native, "figures": estimator.close().to_json()}))
"""


def test_without_the_compiled_scanner_the_figures_are_the_same() -> None:
    data = plain_lines(50_000, seed=3)
    run = subprocess.run([sys.executable, "-c", FALLBACK], input=data, capture_output=True, check=True)
    result: dict[str, Any] = json.loads(run.stdout)
    rates = PricingTable.load().rates_for("vertex", "gemini-2.5-flash", NOW)
    assert rates is not None
    estimator = LineEstimator(rates, max_output=MAX_OUTPUT)
    assert estimator.native
    estimator.feed(data)
    assert result == {"native": False, "estimator": False, "figures": estimator.close().to_json()}


def test_every_simd_path_gives_the_same_figures_and_no_other_is_accepted(simd_path: str) -> None:
    data = plain_lines(300_000) + text_line("é" * 70 + " words_and 123 digits, punctuation!? \t" * 9)
    found = {}
    for path in simd_paths():
        use_simd(path)
        found[path] = claimed(data, above=500)
    use_simd(simd_path)
    assert len(set(found.values())) == 1, found
    assert found["sse2"][0] == len(data)
    with pytest.raises(ValueError, match="no SIMD path neon on this machine"):
        use_simd("neon")
