"""One Vertex batch output row, decoded with msgspec into just the fields the OpenAI door answers from.

The structs name what the output conversion reads (the echoed request's labels, the response's candidates and
usage, an embedding's values and token count, a failed row's status); everything else is checked as JSON and
skipped. The usage is decoded with the Vertex usage reader's own struct (`proxy.providers.vertex.usage.Usage`) and
read with its `usage_of`, so the tokens a line reports are the ones metering bills for the same row.
A row that does not decode into these types (a count that is not a non-negative integer, a status that is not a
string, ...) is malformed: `locate` then still tries to find its line from a generic parse.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from proxy.openai_door.line_index import LINE_LABEL
from proxy.providers.vertex.usage import Usage


class FunctionCall(msgspec.Struct):
    name: str = ""
    args: msgspec.Raw = msgspec.Raw()


class Part(msgspec.Struct):
    text: str | None = None
    thought: bool | None = None
    functionCall: FunctionCall | None = None


class Content(msgspec.Struct):
    parts: list[Part] | None = None


class Candidate(msgspec.Struct):
    content: Content | None = None
    finishReason: str | None = None
    index: int | None = None


class PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class Response(msgspec.Struct):
    candidates: list[Candidate] | None = None
    createTime: str | None = None
    responseId: str | None = None
    modelVersion: str | None = None
    usageMetadata: Usage | None = None
    promptFeedback: PromptFeedback | None = None


class EchoedRequest(msgspec.Struct):
    labels: dict[str, str] | None = None


class Statistics(msgspec.Struct):
    token_count: int | float | None = None


class Embeddings(msgspec.Struct):
    statistics: Statistics | None = None
    values: msgspec.Raw = msgspec.Raw()  # copied into the answer as it stands, never turned into floats


class Prediction(msgspec.Struct):
    embeddings: Embeddings | None = None


class Instance(msgspec.Struct):
    content: str | None = None


class Row(msgspec.Struct):
    status: str | None = None
    processed_time: str | None = None
    custom_id: str | None = None  # the sibling key of the input line, when Vertex echoes it
    request: EchoedRequest | None = None
    response: Response | None = None
    instance: Instance | None = None
    predictions: list[Prediction] | None = None


decode_row = msgspec.json.Decoder(Row).decode
_decode_any = msgspec.json.Decoder().decode


def label_line(labels: Any) -> int | None:
    """The caller's line number a request's labels carry, or None."""
    value = labels.get(LINE_LABEL) if isinstance(labels, dict) else None
    # isascii(): str.isdigit() also takes '²', which int() refuses
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
        return int(value)
    return None


def locate(raw: bytes) -> tuple[int | None, str | None, str | None]:
    """For a malformed row: (label line, sibling custom_id, instance content) read from a generic parse."""
    try:
        item = _decode_any(raw)
    except msgspec.DecodeError:
        return None, None, None
    if not isinstance(item, dict):
        return None, None, None
    request, instance, custom_id = item.get("request"), item.get("instance"), item.get("custom_id")
    content = instance.get("content") if isinstance(instance, dict) else None
    return (label_line(request.get("labels")) if isinstance(request, dict) else None,
            custom_id if isinstance(custom_id, str) else None, content if isinstance(content, str) else None)


def embedding_tokens(predictions: list[Prediction]) -> int | None:
    """The row's statistics.token_count summed (as the usage reader sums it); None when a count is fractional."""
    tokens = 0
    for prediction in predictions:
        statistics = prediction.embeddings.statistics if prediction.embeddings is not None else None
        count = statistics.token_count if statistics is not None else None
        if count is None:
            continue
        if count < 0 or (isinstance(count, float) and not count.is_integer()):
            return None
        tokens += int(count)
    return tokens


def google_error(status: str) -> tuple[int, str, str | None]:
    """A failed row's (HTTP code, message, Google status name) from its `status` text: `Bad Request: {"error": ...}`.

    A status without an embedded error is a 500 whose message is the status text itself.
    """
    brace = status.find("{")
    if brace >= 0:
        try:
            error = json.loads(status[brace:])["error"]
            code, message, name = error["code"], error["message"], error.get("status")
            if isinstance(code, int) and 400 <= code <= 599 and isinstance(message, str):
                return code, message, name if isinstance(name, str) else None
        except (ValueError, TypeError, KeyError):
            pass
    return 500, status, None
