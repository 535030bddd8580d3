"""The OpenAI and Azure stand-ins' token rule, with figures worked out by hand from its docstring."""

from __future__ import annotations

import pytest

from proxy.emulator.openai_usage_rule import chat_usage, embedding_inputs, message_tokens
from proxy.emulator.usage_rule import InvalidRequest

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},  # 6 tokens
            {"role": "user", "content": "Hello world!"}]                    # 3 tokens


def test_the_docstring_example_is_cut_at_max_tokens() -> None:
    usage = chat_usage("gpt-4o-mini", {"messages": MESSAGES, "max_tokens": 10})
    assert usage.to_json() == {
        "prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }
    assert usage.finish_reason == "length"


def test_without_a_cap_the_answer_has_its_natural_length() -> None:
    long_prompt = [{"role": "user", "content": " ".join(["word"] * 250)}]  # 250 tokens: 20 + 25 = 45
    usage = chat_usage("gpt-4o", {"messages": long_prompt, "max_tokens": 50})
    assert (usage.prompt, usage.completion, usage.reasoning, usage.finish_reason) == (250, 45, 0, "stop")


def test_reasoning_models_reason_inside_the_cap() -> None:
    free = chat_usage("o4-mini", {"messages": MESSAGES})
    assert (free.completion, free.reasoning, free.answer, free.finish_reason) == (100, 80, 20, "stop")
    capped = chat_usage("o4-mini", {"messages": MESSAGES, "max_completion_tokens": 10, "max_tokens": 99})
    # floor(10 * 80 / 100) = 8 reasoning tokens, 2 answer tokens; max_completion_tokens wins over max_tokens.
    assert (capped.completion, capped.reasoning, capped.answer, capped.finish_reason) == (10, 8, 2, "length")


def test_a_prompt_cache_key_caches_three_quarters_and_text_parts_count() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello world!"},
                                          {"type": "image_url", "image_url": {"url": "https://x"}}]}]
    assert message_tokens(parts) == 3
    usage = chat_usage("gpt-4o-mini", {"messages": MESSAGES, "prompt_cache_key": "team-a"})
    assert (usage.prompt, usage.cached, usage.completion) == (9, 6, 20)


def test_embedding_inputs_count_each_text_or_token_array() -> None:
    assert embedding_inputs({"input": ["Hello world!", "a b"]}) == [3, 2]
    assert embedding_inputs({"input": "You are a helpful assistant."}) == [6]
    assert embedding_inputs({"input": [[1, 2, 3], [4]]}) == [3, 1]
    with pytest.raises(InvalidRequest):
        embedding_inputs({"input": 5})
    with pytest.raises(InvalidRequest):
        message_tokens([])
