"""The compiled fast path of the upload conversion (`_chatscan.chat_lines`) held to the Python path, byte for byte.

Every file here is converted twice, by `convert_file` as the door runs it and with `native=False` (the Python path
reads every line, the reference): the converted bytes, the index and the counts must be the same, or the same
FileRejected (message, code, line, param) must be raised. The files: the bad-file cases of test_file_conversion and
the refusals of test_chat_request (each behind a good first line, so that the fast path is on), lines of the
common shape with every escape, number form and parameter the fast path takes, lines a step outside it, runs that
repeat a custom_id or pass the line limit, random lines (hypothesis) and random edits of lines. Some tests also
check that the fast path did take the lines (`chat_lines` directly), so that a fast path that took nothing could not
pass them.
"""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.openai_door._chatscan import chat_lines
from proxy.openai_door.file_conversion import ConvertedFile, FileRejected, convert_file
from tests.openai_door import test_chat_request, test_file_conversion
from tests.openai_door.support import CHAT_MODEL, chat_line, convert
from tests.support import fuzzing

GOOD = json.dumps(chat_line("first")).encode()


def outcome(data: bytes, *, native: bool, max_lines: int, chunk: int | None = None) -> tuple[Any, ...]:
    """What converting `data` gives: the converted file and bytes, or the refusal."""
    try:
        converted, vertex = convert(data, max_lines=max_lines, native=native)
    except FileRejected as rejected:
        return ("rejected", rejected.message, rejected.code, rejected.line, rejected.param)
    return ("converted", _shown(converted), vertex)


def _shown(converted: ConvertedFile) -> tuple[Any, ...]:
    return (converted.model, converted.endpoint, converted.lines, converted.bytes, converted.vertex_lines,
            converted.kept, converted.index.to_bytes())


def agree(data: bytes, *, max_lines: int = 50_000) -> tuple[Any, ...]:
    """Both paths give the same outcome for `data`; that outcome."""
    native = outcome(data, native=True, max_lines=max_lines)
    assert native == outcome(data, native=False, max_lines=max_lines), data[:3000]
    return native


def taken(*lines: bytes) -> int:
    """How many of `lines` (numbered from 2) the fast path converts in one run."""
    data = b"".join(line + b"\n" for line in lines)
    return len(chat_lines(data, 0, CHAT_MODEL, 2)[1])


def line_of(body: dict[str, Any], custom_id: str = "x", **changes: Any) -> bytes:
    return json.dumps(chat_line(custom_id, body, **changes), ensure_ascii=False).encode()


COMMON: list[dict[str, Any]] = [
    {},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
     "max_tokens": 256, "temperature": 0.2},
    {"messages": [{"role": "developer", "content": [{"type": "text", "text": "A"}, {"text": "B", "type": "text"}]},
                  {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": ""}]},
                  {"role": "assistant", "content": "two", "tool_calls": None, "refusal": None},
                  {"role": "system", "content": "late system"}, {"role": "user", "content": "three"}]},
    {"max_completion_tokens": 2147483647, "max_tokens": 2147483647, "top_p": 1, "presence_penalty": -2,
     "frequency_penalty": 1.5, "n": 8, "seed": -9223372036854775, "stop": ["a", "b\n", "", "d", "e"]},
    {"temperature": 0, "top_p": 0.0, "presence_penalty": -0.5, "frequency_penalty": 0.30000000000000004,
     "seed": 0, "stop": "END", "reasoning_effort": "medium"},
    {"temperature": None, "top_p": None, "max_tokens": None, "n": None, "seed": None, "stop": None, "tools": None,
     "tool_choice": None, "response_format": None, "reasoning_effort": None},
    {"stop": [], "user": "u-1", "safety_identifier": "s", "prompt_cache_key": None, "metadata": {"a": "b", "c": ""},
     "store": False, "stream": False, "logprobs": False, "parallel_tool_calls": True, "reasoning_effort": "none"},
    {"messages": [{"content": "naïve — “quoted” 😀 \\ \" \u0000 \u001f \u007f \u2028 </script>", "role": "user"}]},
]


@pytest.mark.parametrize("body", COMMON)
def test_lines_of_the_common_shape_are_taken_and_convert_alike(body: dict[str, Any]) -> None:
    line = line_of(body)
    assert taken(line) == 1
    assert agree(GOOD + b"\n" + line + b"\n")[0] == "converted"


ESCAPED = [
    rb'"\u0041\u00e9\u20ac\ud83d\ude00"', rb'"\/\b\f\n\r\t\"\\"', rb'"\u0000\u0008\u0009\u000a\u000b\u000c\u000d"',
    rb'"\u001f\u0020\u0022\u005c\u007f\u2028\uFFFF"', rb'"a\\u0041"', rb'""', rb'"\u00"e"', rb'"\ud800"',
    rb'"\udc00"', rb'"\ud83d\u0041"', rb'"tab	raw"', b'"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"', b'"\xed\xa0\x80"',
    b'"\xc0\xaf"', b'"\xff"',
]


@pytest.mark.parametrize("text", ESCAPED)
def test_escapes_and_utf8_in_texts_and_stops_convert_alike(text: bytes) -> None:
    for template in (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"%(model)s",'
                     b'"messages":[{"role":"user","content":%(text)s}]}}',
                     b'{"custom_id":"x","method":"POST","url":"/chat/completions","body":{"model":"%(model)s",'
                     b'"messages":[{"role":"system","content":[{"type":"text","text":%(text)s}]},'
                     b'{"role":"user","content":"q"}],"stop":[%(text)s]}}'):
        agree(GOOD + b"\n" + template % {b"model": CHAT_MODEL.encode(), b"text": text} + b"\n")


def test_valid_escapes_and_utf8_are_taken() -> None:
    for text in ESCAPED[:6] + [ESCAPED[11]]:
        line = (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"%s",'
                b'"messages":[{"role":"user","content":%s}]}}' % (CHAT_MODEL.encode(), text))
        assert taken(line) == 1, text


@pytest.mark.parametrize("number", [b"0.2", b"1", b"0", b"2", b"2.0", b"0.1", b"1.5", b"-0", b"-0.0", b"0.20", b"1e0",
                                    b"1E-1", b"0.00001", b"0.0001", b"1.0000000000000002", b"2.0000000000000001",
                                    b"2.5", b"3", b"-1", b"1.", b".5", b"01", b"true", b"null", b'"1"',
                                    b"123456789012345678901234567890", b"0.30000000000000004"])
def test_number_forms_convert_alike(number: bytes) -> None:
    for key in (b"temperature", b"top_p", b"presence_penalty", b"frequency_penalty", b"max_tokens", b"n", b"seed"):
        line = (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"%s",'
                b'"messages":[{"role":"user","content":"q"}],"%s":%s}}' % (CHAT_MODEL.encode(), key, number))
        agree(GOOD + b"\n" + line + b"\n")


def test_decimals_are_taken_only_in_the_form_msgspec_writes() -> None:
    def temperature(number: bytes) -> bytes:
        return (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"%s",'
                b'"messages":[{"role":"user","content":"q"}],"temperature":%s}}' % (CHAT_MODEL.encode(), number))
    assert [taken(temperature(n)) for n in (b"0.2", b"1", b"2.0", b"0.0001")] == [1, 1, 1, 1]
    assert [taken(temperature(n)) for n in (b"0.20", b"1e0", b"-0", b"0.00001", b"2.5")] == [0, 0, 0, 0, 0]


OUTSIDE = [
    {"messages": [{"role": "tool", "content": "x", "tool_call_id": "c"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "gs://b/a.png"}}]}]},
    {"messages": [{"role": "user", "content": "x", "name": "n"}]},
    {"messages": [{"role": "user", "content": None}]},
    {"messages": [{"role": "user", "content": []}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]},
    {"messages": [{"role": "assistant", "content": None}]},
    {"messages": [{"role": "assistant", "content": "a", "refusal": "no"}]},
    {"messages": [{"role": "system", "content": "only system"}]},
    {"messages": [{"role": "user", "content": "a", "tool_calls": None}]},
    {"messages": []},
    {"messages": "hi"},
    {"messages": [{"role": "USER", "content": "a"}]},
    {"response_format": {"type": "json_object"}},
    {"tools": [{"type": "function", "function": {"name": "f"}}]},
    {"tool_choice": "auto"},
    {"stop": ["a", "b", "c", "d", "e", "f"]},
    {"stop": [1]},
    {"reasoning_effort": "max"},
    {"metadata": {"a": 1}},
    {"user": 5},
    {"store": True},
    {"stream": None},
    {"parallel_tool_calls": False},
    {"logprobs": True},
    {"max_tokens": 10, "max_completion_tokens": 11},
    {"max_tokens": 0},
    {"n": 9},
    {"logit_bias": {"1": 2}},
    {"model": "gemini-2.5-pro"},
    {"model": ""},
]


@pytest.mark.parametrize("body", OUTSIDE)
def test_lines_outside_the_common_shape_are_left_to_python_and_end_alike(body: dict[str, Any]) -> None:
    line = line_of(body)
    assert taken(line) == 0
    agree(GOOD + b"\n" + line + b"\n")


def _cases(test: Any) -> list[tuple[Any, ...]]:
    """The parameters of another module's parametrized test."""
    cases: list[tuple[Any, ...]] = test.pytestmark[0].args[1]
    return cases


@pytest.mark.parametrize("case", _cases(test_file_conversion.test_a_bad_file_is_refused_at_its_first_bad_line),
                         ids=lambda case: case[4][:60])
def test_the_bad_files_of_the_conversion_tests_are_refused_alike(case: tuple[Any, ...]) -> None:
    data = case[0]
    assert agree(data, max_lines=2)[0] == "rejected"
    agree(GOOD + b"\n" + data, max_lines=3)


@pytest.mark.parametrize("case", _cases(test_chat_request.test_refusals_name_the_parameter), ids=lambda case: case[1])
def test_the_refused_bodies_of_the_chat_tests_are_refused_alike(case: tuple[Any, ...]) -> None:
    line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": CHAT_MODEL, "messages": [test_chat_request.USER]} | case[0]}).encode()
    found = agree(GOOD + b"\n" + line + b"\n")
    assert found[0] == "rejected" and found[3] == 2 and found[4] == case[1], found


def test_a_repeated_custom_id_in_a_run_or_before_it_is_refused_by_the_python_path() -> None:
    lines = [line_of({}, f"r-{n}") for n in range(1, 50)]
    within = GOOD + b"\n" + b"\n".join([*lines, line_of({}, "r-7")]) + b"\n"
    assert agree(within) == ("rejected", "Line 51: custom_id 'r-7' is used twice (first on line 8).",
                             "duplicate_custom_id", 51, "custom_id")
    before = GOOD + b"\n" + b"\n".join([line_of({}, "first")] + lines) + b"\n"
    assert agree(before)[1] == "Line 2: custom_id 'first' is used twice (first on line 1)."


def test_the_line_limit_is_checked_at_the_line_that_passes_it() -> None:
    data = GOOD + b"\n" + b"\n".join(line_of({}, f"r-{n}") for n in range(1, 30)) + b"\n"
    assert agree(data, max_lines=20) == ("rejected", "Line 21: the file holds more than the 20 requests a batch may "
                                         "have.", "too_many_tasks", 21, None)
    assert agree(data, max_lines=30)[0] == "converted"


def test_crlf_a_last_line_without_newline_blank_lines_and_a_model_change_end_alike() -> None:
    lines = [line_of({}, f"r-{n}") for n in range(1, 6)]
    assert agree(GOOD + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n\n")[0] == "converted"
    assert agree(GOOD + b"\n" + b"\n".join(lines))[0] == "converted"
    assert agree(GOOD + b"\n" + b"\n".join(lines[:2] + [b"", b"  "] + lines[2:]) + b"\n")[0] == "rejected"
    assert agree(GOOD + b"\n" + b"\n".join(lines[:2] + [line_of({"model": "gemini-2.5-pro"})]))[4] == "body.model"
    assert agree(b"  " + GOOD + b" \t\n " + lines[0] + b"\r\r\n")[0] == "converted"


class _Trickle(io.BytesIO):
    """A source that hands over at most 777 bytes a read (as a socket may)."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(777 if size is None or size < 0 else min(size, 777))


def test_a_file_read_in_small_pieces_converts_as_in_one() -> None:
    data = GOOD + b"\n" + b"\n".join(line_of({"max_tokens": n}, f"r-{n}") for n in range(1, 200)) + b"\n"
    sink = io.BytesIO()
    converted = convert_file(_Trickle(data), sink, max_lines=1000, max_bytes=len(data))
    assert ("converted", _shown(converted), sink.getvalue()) == agree(data)


_text = st.text(st.characters(codec="utf-8"), max_size=30)
_number = st.one_of(st.integers(-3, 10), st.floats(-3, 3, allow_nan=False), st.none(), st.booleans(),
                    st.sampled_from([0.2, 1.0, 0.0001, 1e-5, 2**31, 2**31 - 1]))
_content = st.one_of(_text, st.none(), st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
                                                max_size=3),
                     st.lists(st.dictionaries(st.sampled_from(["type", "text", "image_url"]),
                                              st.one_of(_text, st.just("text"), st.integers()), max_size=3),
                              max_size=2))
_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant", "tool",
                                                           "other"]), "content": _content},
                                  optional={"tool_calls": st.none(), "refusal": st.one_of(st.none(), _text),
                                            "name": _text})
_body = st.fixed_dictionaries({"messages": st.lists(_message, max_size=4)}, optional={
    "max_tokens": _number, "max_completion_tokens": _number, "temperature": _number, "top_p": _number,
    "presence_penalty": _number, "frequency_penalty": _number, "n": _number, "seed": _number,
    "stop": st.one_of(_text, st.none(), st.lists(_text, max_size=6), st.lists(st.integers(), max_size=1)),
    "reasoning_effort": st.sampled_from(["low", "high", "none", "max", None]),
    "metadata": st.one_of(st.dictionaries(_text, _text, max_size=2), st.dictionaries(_text, st.integers(),
                                                                                      max_size=1)),
    "user": st.one_of(_text, st.integers()), "store": st.booleans(), "stream": st.booleans(),
    "parallel_tool_calls": st.booleans(), "response_format": st.one_of(st.none(), st.just({"type": "text"})),
    "model": st.sampled_from([CHAT_MODEL, CHAT_MODEL, "gemini-2.5-pro"]), "logit_bias": st.just({})})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(_body, min_size=1, max_size=4), ascii_only=st.booleans(),
       ids=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "é", "a\"b"]), min_size=4, max_size=4))
def test_random_lines_convert_or_are_refused_alike(bodies: list[dict[str, Any]], ascii_only: bool,
                                                   ids: list[str]) -> None:
    lines = [json.dumps(chat_line(custom_id, body), ensure_ascii=ascii_only).encode()
             for custom_id, body in zip(ids, bodies, strict=False)]
    agree(GOOD + b"\n" + b"\n".join(lines) + b"\n")


_any_text = st.text(st.characters(codec="utf-8"), max_size=40)
_parts = st.one_of(_any_text, st.lists(st.builds(lambda text: {"type": "text", "text": text}, _any_text), min_size=1,
                                       max_size=3))
_common_message = st.builds(lambda role, content: {"role": role, "content": content},
                            st.sampled_from(["system", "developer", "user", "assistant"]), _parts)
_in_range = st.one_of(st.integers(0, 1), st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 3)))
_common_body = st.fixed_dictionaries(
    {"messages": st.lists(_common_message, max_size=4).map(lambda m: [*m, {"role": "user", "content": "q"}])},
    optional={"max_tokens": st.integers(1, 2**31 - 1), "temperature": _in_range, "top_p": _in_range,
              "presence_penalty": _in_range.map(lambda x: -x), "frequency_penalty": _in_range,
              "n": st.integers(1, 8), "seed": st.integers(-(10**17), 10**17),
              "stop": st.one_of(_any_text, st.lists(_any_text, max_size=5)),
              "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high"]),
              "metadata": st.dictionaries(st.text("abc_ ", max_size=5), _any_text, max_size=2), "user": _any_text})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(_common_body, min_size=1, max_size=4), ascii_only=st.booleans())
def test_random_lines_of_the_common_shape_are_taken_and_convert_alike(bodies: list[dict[str, Any]],
                                                                      ascii_only: bool) -> None:
    lines = [json.dumps(chat_line(f"c-{n}", body), ensure_ascii=ascii_only).encode() for n, body in enumerate(bodies)]
    assert taken(*lines) == len(lines)
    assert agree(GOOD + b"\n" + b"\n".join(lines) + b"\n")[0] == "converted"


_PIECES = [b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b"\r", b"\x00", b"\xff", b"\\u", b"\xc3\xa9", b"null",
           b'"text"', b'"role"', b'"content"', b'"temperature": 1', b"-", b"1e5", b".5", b'"model"', b"0"]


def mutate(rng: random.Random, line: bytes) -> bytes:
    """One to four random edits of a line (byte flips, JSON-ish inserts, deletes), newlines kept out."""
    return fuzzing.mutate(rng, line, _PIECES)


SEEDS = [line_of(body, f"s-{n}") for n, body in enumerate(COMMON)]


def test_random_edits_of_common_lines_convert_or_are_refused_alike() -> None:
    rng = random.Random(14)
    for _ in range(1500):
        agree(GOOD + b"\n" + b"\n".join(mutate(rng, rng.choice(SEEDS)) for _ in range(rng.randint(1, 3))) + b"\n")
