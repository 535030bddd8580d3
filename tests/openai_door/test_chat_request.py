"""Chat bodies -> GenerateContentRequests: every mapped parameter, and every refusal by name."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.openai_door.chat_request import chat_request
from proxy.openai_door.rejections import LineProblem

USER = {"role": "user", "content": "Hi"}
PNG = "data:image/png;base64,iVBORw0KGgo="


def _convert(body: dict[str, Any], checked: list[str] | None = None) -> dict[str, Any]:
    def check(uri: str) -> None:
        if checked is not None:
            checked.append(uri)
        if "forbidden" in uri:
            raise PermissionError(uri)

    return chat_request({"model": "gemini-2.5-flash", **body}, line=7, check_gcs_uri=check)


def test_messages_map_onto_system_instruction_and_user_and_model_contents() -> None:
    request = _convert({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": PNG, "detail": "auto"}}]},
        {"role": "assistant", "content": "A logo."},
        {"role": "user", "content": "Thanks"}]})
    assert request == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is this?"},
                                       {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "model", "parts": [{"text": "A logo."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
        "labels": {"vbp_line": "7"},
    }


def test_generation_parameters_map_onto_generation_config() -> None:
    request = _convert({"messages": [USER], "max_completion_tokens": 100, "temperature": 0.5, "top_p": 0.9,
                        "stop": "END", "n": 2, "seed": 42, "presence_penalty": 0.1, "frequency_penalty": -0.2,
                        "response_format": {"type": "json_object"}, "reasoning_effort": "low",
                        "user": "u-1", "metadata": {"k": "v"}, "store": False, "stream": False,
                        "parallel_tool_calls": True, "logprobs": False})
    assert request["generationConfig"] == {
        "maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9, "presencePenalty": 0.1, "frequencyPenalty": -0.2,
        "candidateCount": 2, "seed": 42, "stopSequences": ["END"], "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 1024}}


@pytest.mark.parametrize(("effort", "budget"), [("none", 0), ("minimal", 0), ("low", 1024), ("medium", 8192),
                                                 ("high", 24576)])
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    config = _convert({"messages": [USER], "reasoning_effort": effort})["generationConfig"]
    assert config == {"thinkingConfig": {"thinkingBudget": budget}}


def test_a_json_schema_goes_through_as_given() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    request = _convert({"messages": [USER], "max_tokens": 9, "stop": ["x", "y"], "response_format": {
        "type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}})
    assert request["generationConfig"] == {"maxOutputTokens": 9, "stopSequences": ["x", "y"],
                                           "responseMimeType": "application/json", "responseJsonSchema": schema}


def test_tools_tool_choice_tool_calls_and_tool_answers() -> None:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = _convert({
        "messages": [USER,
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "call_1", "type": "function",
                          "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}},
                         {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
                     {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]}],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                                    "parameters": parameters, "strict": True}},
                  {"type": "function", "function": {"name": "time"}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}})
    assert request["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
                                    {"functionCall": {"name": "time", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"content": "Sunny"}}},
                                   {"functionResponse": {"name": "time", "response": {"content": "noon"}}}]}]
    assert request["tools"] == [{"functionDeclarations": [
        {"name": "weather", "description": "Weather now", "parametersJsonSchema": parameters}, {"name": "time"}]}]
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}


@pytest.mark.parametrize(("choice", "mode"), [("none", "NONE"), ("auto", "AUTO"), ("required", "ANY")])
def test_tool_choice_modes(choice: str, mode: str) -> None:
    request = _convert({"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}],
                        "tool_choice": choice})
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_a_gs_image_takes_its_type_from_the_extension_and_is_checked() -> None:
    checked: list[str] = []
    request = _convert({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "gs://team-a/pics/cat.JPG"}}]}]}, checked)
    assert request["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://team-a/pics/cat.JPG"}}]
    assert checked == ["gs://team-a/pics/cat.JPG"]
    with pytest.raises(PermissionError):
        _convert({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "gs://forbidden/cat.png"}}]}]})


IMAGE = "body.messages[0].content[0].image_url"


@pytest.mark.parametrize(("body", "param", "code", "message"), [
    ({"logit_bias": {}}, "body.logit_bias", "unsupported_parameter",
     "body.logit_bias is not supported: Gemini has no per-token bias."),
    ({"stream": True}, "body.stream", "unsupported_parameter", "body.stream is not supported: batch lines cannot "
     "stream."),
    ({"logprobs": True}, "body.logprobs", "unsupported_parameter",
     "body.logprobs is not supported: log probabilities are not returned by this conversion."),
    ({"top_logprobs": 2}, "body.top_logprobs", "unsupported_parameter",
     "body.top_logprobs is not supported: log probabilities are not returned by this conversion."),
    ({"audio": {"voice": "x"}}, "body.audio", "unsupported_parameter",
     "body.audio is not supported: audio output is not available through the OpenAI door."),
    ({"modalities": ["text"]}, "body.modalities", "unsupported_parameter",
     "body.modalities is not supported: only text output is available through the OpenAI door."),
    ({"service_tier": "flex"}, "body.service_tier", "unsupported_parameter",
     "body.service_tier is not supported: Vertex batch jobs have one tier."),
    ({"parallel_tool_calls": False}, "body.parallel_tool_calls", "unsupported_parameter",
     "body.parallel_tool_calls is not supported: Gemini cannot be kept from calling several functions at once."),
    ({"frobnicate": 1}, "body.frobnicate", "unsupported_parameter",
     "body.frobnicate is not supported: the conversion to Vertex has no equivalent for it."),
    ({"temperature": 3}, "body.temperature", "invalid_request", "body.temperature must be a number from 0 to 2."),
    ({"n": True}, "body.n", "invalid_request", "body.n must be an integer from 1 to 8."),
    ({"max_tokens": 5, "max_completion_tokens": 6}, "body.max_completion_tokens", "invalid_request",
     "body.max_completion_tokens differs from body.max_tokens (give one of them)."),
    ({"reasoning_effort": "max"}, "body.reasoning_effort", "invalid_request",
     "body.reasoning_effort must be one of none, minimal, low, medium, high."),
    ({"messages": [{"role": "system", "content": "x"}]}, "body.messages", "invalid_request",
     "body.messages holds no user or assistant message (Gemini needs at least one)."),
    ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "body.messages[0].name",
     "unsupported_parameter", "body.messages[0].name is not supported: a user message's 'name' has no Vertex "
     "equivalent."),
    ({"messages": [{"role": "function", "content": "x"}]}, "body.messages[0].role", "invalid_request",
     "body.messages[0].role must be one of system, developer, user, assistant, tool."),
    ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "body.messages[0].tool_call_id",
     "invalid_request", "body.messages[0].tool_call_id names no tool call of an earlier assistant message."),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "body.messages[0].content[0].type", "unsupported_parameter", "body.messages[0].content[0].type is not "
     "supported: content parts of type 'input_audio' are not converted (text and image_url are)."),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]},
     f"{IMAGE}.url", "unsupported_parameter", f"{IMAGE}.url is not supported: a Vertex batch job cannot fetch web "
     "URLs; send the image as a base64 data URL or copy it to Cloud Storage and give its gs:// URI."),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "gs://bkt/a.tiff"}}]}]},
     f"{IMAGE}.url", "unsupported_parameter", f"{IMAGE}.url is not supported: the image type cannot be told from "
     "the object's extension (one of .png, .jpg, .jpeg, .webp, .heic, .heif is needed)."),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG,
                                                                                    "detail": "high"}}]}]},
     f"{IMAGE}.detail", "unsupported_parameter", f"{IMAGE}.detail is not supported: Gemini sets no resolution per "
     "image (only \"auto\" is taken)."),
    ({"tools": [{"type": "web_search"}]}, "body.tools[0].type", "unsupported_parameter",
     "body.tools[0].type is not supported: only tools of type \"function\" are converted."),
    ({"response_format": {"type": "yaml"}}, "body.response_format", "invalid_request",
     "body.response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": "
     "\"json_schema\", \"json_schema\": {...}}."),
])
def test_refusals_name_the_parameter(body: dict[str, Any], param: str, code: str, message: str) -> None:
    with pytest.raises(LineProblem) as caught:
        _convert({"messages": [USER], **body})
    assert (caught.value.param, caught.value.code, caught.value.message) == (param, code, message)
