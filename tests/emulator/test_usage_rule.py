"""The documented token rule, checked against hand-computed figures."""

from __future__ import annotations

import base64

import pytest

from proxy.emulator.usage_rule import InvalidRequest, embedding_tokens, text_tokens, usage_for

# The first line of tests/data/vertex-batch-input.jsonl (the public LiteLLM Vertex batch example).
SAMPLE_REQUEST = {"contents": [{"role": "user", "parts": [{"text": "Hello world!"}]}],
                  "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
                  "generationConfig": {"maxOutputTokens": 10}}


def _request(text: str, **extra: object) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


@pytest.mark.parametrize(("text", "tokens"), [
    ("Hello world!", 3),                      # Hello, world, !
    ("You are a helpful assistant.", 6),      # 5 words and a full stop
    ("", 0),
    ("don't stop", 4),                        # don, ', t, stop
    ("   ", 0),
    ("naïve café, 42", 4),                    # unicode letters are word characters
])
def test_text_tokens_by_hand(text: str, tokens: int) -> None:
    assert text_tokens(text) == tokens


def test_the_sample_lines_get_the_figures_vertex_reported() -> None:
    # tests/data/vertex-predictions.jsonl: gemini-2.5-flash-lite answered these with 9 prompt and 10 candidate tokens.
    usage = usage_for("gemini-2.5-flash-lite", SAMPLE_REQUEST)
    assert usage.metadata() == {
        "candidatesTokenCount": 10,
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 10}],
        "promptTokenCount": 9,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
        "totalTokenCount": 19,
        "trafficType": "ON_DEMAND",
    }
    assert usage.finish_reason == "MAX_TOKENS"


def test_a_thinking_model_thinks_four_tokens_per_answer_token() -> None:
    # 3 prompt tokens; natural answer 20 + 3 // 10 = 20; thoughts 4 * 20 = 80; total 3 + 20 + 80.
    usage = usage_for("gemini-2.5-flash", _request("Hello world!"))
    assert (usage.prompt_tokens, usage.candidates, usage.thoughts, usage.total_tokens) == (3, 20, 80, 103)
    assert usage.finish_reason == "STOP"
    assert usage.metadata()["thoughtsTokenCount"] == 80


@pytest.mark.parametrize(("model", "config", "thoughts"), [
    ("gemini-2.5-pro", {}, 80),
    ("gemini-2.5-flash", {"thinkingConfig": {"thinkingBudget": 0}}, 0),
    ("gemini-2.5-flash", {"thinkingConfig": {"thinkingBudget": 50}}, 50),
    ("gemini-2.5-flash", {"thinking_config": {"thinking_budget": -1}}, 80),
    ("gemini-2.5-flash-lite", {}, 0),
    ("gemini-2.5-flash-lite", {"thinkingConfig": {"thinkingBudget": 500}}, 80),
    ("gemini-2.0-flash", {"thinkingConfig": {"thinkingBudget": 500}}, 0),
])
def test_thinking_budget(model: str, config: dict[str, object], thoughts: int) -> None:
    usage = usage_for(model, _request("Hello world!", generationConfig=config))
    assert usage.thoughts == thoughts
    assert ("thoughtsTokenCount" in usage.metadata()) is (thoughts > 0)


def test_max_output_tokens_bounds_the_answer() -> None:
    # 100 words -> natural 20 + 10 = 30 tokens; a limit of 12 cuts it.
    text = " ".join(["word"] * 100)
    assert usage_for("gemini-2.0-flash", _request(text)).candidates == 30
    limited = usage_for("gemini-2.0-flash", _request(text, generationConfig={"maxOutputTokens": 12}))
    assert (limited.candidates, limited.finish_reason) == (12, "MAX_TOKENS")
    roomy = usage_for("gemini-2.0-flash", _request(text, generationConfig={"max_output_tokens": 500}))
    assert (roomy.candidates, roomy.finish_reason) == (30, "STOP")


def test_cached_content_caches_three_quarters_of_each_modality() -> None:
    audio = base64.b64encode(b"\0" * 40_000).decode()  # 40,000 bytes = 3 started seconds = 96 tokens
    request = _request("one two three four five six seven", cachedContent="projects/p/cachedContents/1")
    request["contents"][0]["parts"].append({"inlineData": {"mimeType": "audio/wav", "data": audio}})  # type: ignore[index]
    usage = usage_for("gemini-2.5-flash-lite", request)
    meta = usage.metadata()
    assert meta["promptTokenCount"] == 7 + 96
    assert meta["cachedContentTokenCount"] == 5 + 72  # floor(3 * 7 / 4) + floor(3 * 96 / 4)
    assert meta["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": 7},
                                           {"modality": "AUDIO", "tokenCount": 96}]
    assert meta["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 5},
                                          {"modality": "AUDIO", "tokenCount": 72}]


def test_media_parts_by_mime_type() -> None:
    request = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},  # 3 tokens
        "contents": [{"role": "user", "parts": [
            {"fileData": {"mimeType": "audio/mpeg", "fileUri": "gs://b/a.mp3"}},      # 320 AUDIO
            {"file_data": {"mime_type": "image/png", "file_uri": "gs://b/i.png"}},    # 258 IMAGE
            {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://b/v.mp4"}},       # 2630 VIDEO
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/d.pdf"}},  # 258 DOCUMENT
            {"inlineData": {"mimeType": "audio/ogg", "data": base64.b64encode(b"x").decode()}},  # 1 s = 32 AUDIO
        ]}],
    }
    usage = usage_for("gemini-2.0-flash", request)
    assert usage.prompt == {"TEXT": 3, "AUDIO": 352, "IMAGE": 258, "VIDEO": 2630, "DOCUMENT": 258}
    assert usage.prompt_tokens == 3501
    assert usage.cached == {}


def test_a_long_text_crosses_the_long_context_tier() -> None:
    usage = usage_for("gemini-2.5-pro", _request("word " * 200_001))
    assert usage.prompt_tokens == 200_001
    assert usage.candidates == 1000  # min(1000, 20 + 20,000)
    assert usage.total_tokens == 200_001 + 1000 + 4000


def test_bad_inline_data_is_an_invalid_request() -> None:
    request = {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "audio/wav", "data": "%%%"}}]}]}
    with pytest.raises(InvalidRequest):
        usage_for("gemini-2.5-flash", request)


def test_embedding_tokens_truncate_at_2048() -> None:
    assert embedding_tokens("What is the meaning of life?") == (7, False)
    assert embedding_tokens("w " * 3000) == (2048, True)


# Rule 5: thinking counts inside maxOutputTokens. "Hello world!" is 3 prompt tokens, so the natural answer is
# A = 20 + 3 // 10 = 20 tokens and the natural thoughts T = 4 * 20 = 80 (figures worked by hand below).
@pytest.mark.parametrize(("config", "candidates", "thoughts", "finish"), [
    ({"maxOutputTokens": 10}, 2, 8, "MAX_TOKENS"),     # 10 * 80 // 100 = 8 thoughts, 10 - 8 = 2 answer tokens
    ({"maxOutputTokens": 3}, 1, 2, "MAX_TOKENS"),      # 3 * 80 // 100 = 2
    ({"maxOutputTokens": 2}, 1, 1, "MAX_TOKENS"),      # 2 * 80 // 100 = 1: both stay above zero
    ({"maxOutputTokens": 1}, 1, 0, "MAX_TOKENS"),      # no room to think
    ({"maxOutputTokens": 99}, 20, 79, "MAX_TOKENS"),   # 99 * 80 // 100 = 79, within [1, 98]
    ({"maxOutputTokens": 100}, 20, 80, "STOP"),        # 20 + 80 fits exactly
    ({"max_output_tokens": 500}, 20, 80, "STOP"),
    # a thinking budget of 50 first caps T at 50; then 35 * 50 // 70 = 25 thoughts and 10 answer tokens
    ({"maxOutputTokens": 35, "thinkingConfig": {"thinkingBudget": 50}}, 10, 25, "MAX_TOKENS"),
])
def test_thinking_counts_inside_max_output_tokens(config: dict[str, object], candidates: int, thoughts: int,
                                                  finish: str) -> None:
    usage = usage_for("gemini-2.5-flash", _request("Hello world!", generationConfig=config))
    assert (usage.candidates, usage.thoughts, usage.finish_reason) == (candidates, thoughts, finish)


@pytest.mark.parametrize("cap", [1, 2, 3, 7, 50, 99, 100, 101, 4999, 5000, 5001])
@pytest.mark.parametrize("model", ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"])
def test_no_line_reports_more_output_than_its_cap(model: str, cap: int) -> None:
    for words in (1, 100, 10_000):  # natural answers of 20, 30 and 1000 tokens
        usage = usage_for(model, _request("word " * words, generationConfig={"maxOutputTokens": cap}))
        assert usage.candidates + usage.thoughts <= cap
        assert usage.candidates >= 1
        if cap >= 2 and model.startswith("gemini-2.5") and "lite" not in model:
            assert usage.thoughts >= 1
