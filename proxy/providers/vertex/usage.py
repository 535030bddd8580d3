"""The Vertex row reader's parser: one output row of a batch job, what kind of line it is and the tokens it reports.

The row's counts are mapped onto the seam's provider-neutral kinds (`proxy.providers.base.RowUsage`):
promptTokenCount -> input (cached included), cachedContentTokenCount -> cached input, candidatesTokenCount ->
output, thoughtsTokenCount -> reasoning, toolUsePromptTokenCount -> tool-use input, the AUDIO entries of
promptTokensDetails and cacheTokensDetails -> audio input and cached audio input, an embedding's
statistics.token_count -> embedding tokens and the length of its `instance.content` -> embedding characters.

Kinds of line (`RowUsage.kind`):
- `succeeded`: a `response` with `usageMetadata` (Gemini), or `predictions[*].embeddings.statistics.token_count`
  (embeddings): billed.
- `failed`: a non-empty `status` and no `response`: counted, free.
- `no_usage`: neither of the above (a `response` without `usageMetadata`, a row with an empty status and nothing
  else): counted apart and not billed, so a job full of them shows rather than passing as $0.
- `malformed`: not JSON, not an object, or a field of the wrong type (a count that is not a non-negative
  integer, a string where an object belongs): counted and reported with the reason; parsing never raises.
A row with a `response` is judged by its response alone (its `status` and other members are not consulted).

Speed: this runs on every line of multi-GB outputs, so rows are decoded with msgspec into typed structs that
name only the fields we read (everything else is scanned, checked as JSON and skipped, never built). Vertex
writes the row's `response` as its last member, and the echoed `request` before it (usually the bulk of a
line) holds nothing billable, so the fast path decodes only the text after the last `"response":{`, and only
accepts it when that object ends exactly at the row's final `}`: then, for any valid JSON line, it is the very
member a full parse would give (a `"response":{` inside a string has escaped quotes; a nested one does not end
there). Any other line, or any doubt, takes the full parse. What the fast path does not check is the syntax of
the text BEFORE the response (status, echoed request): damage confined to it does not make a line `malformed`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage

Count = Annotated[int, msgspec.Meta(ge=0)]


class Detail(msgspec.Struct):
    modality: str | None = None
    tokenCount: Count | None = None


class Usage(msgspec.Struct):
    promptTokenCount: Count | None = None
    cachedContentTokenCount: Count | None = None
    candidatesTokenCount: Count | None = None
    thoughtsTokenCount: Count | None = None
    toolUsePromptTokenCount: Count | None = None
    promptTokensDetails: list[Detail] | None = None
    cacheTokensDetails: list[Detail] | None = None


class Response(msgspec.Struct):
    """A row's `response`: only what metering reads (the rest is checked as JSON and skipped)."""

    modelVersion: str | None = None
    usageMetadata: Usage | None = None


class _Row(msgspec.Struct):
    # Raw: scanned as JSON but decoded only when the row has no response.
    response: Response | None = None
    status: msgspec.Raw = msgspec.Raw()
    predictions: msgspec.Raw = msgspec.Raw()
    instance: msgspec.Raw = msgspec.Raw()


class _Statistics(msgspec.Struct):
    # Prediction payloads are protobuf Values, whose numbers are doubles: `8.0` is as good as `8`.
    token_count: Annotated[int, msgspec.Meta(ge=0)] | Annotated[float, msgspec.Meta(ge=0)] | None = None


class _Embeddings(msgspec.Struct):
    statistics: _Statistics | None = None


class _Prediction(msgspec.Struct):
    embeddings: _Embeddings | None = None


class _Instance(msgspec.Struct):
    content: str | None = None


_decode_response = msgspec.json.Decoder(Response).decode
_decode_row = msgspec.json.Decoder(_Row).decode
_decode_status = msgspec.json.Decoder(str | None).decode
_decode_predictions = msgspec.json.Decoder(list[_Prediction]).decode
_decode_instance = msgspec.json.Decoder(_Instance | None).decode
_RESPONSE_KEY = b'"response":{'
_RESPONSE_VALUE_AT = len(_RESPONSE_KEY) - 1
_BACKSLASH, _OPEN, _CLOSE = ord("\\"), ord("{"), ord("}")


def parse_row(raw: bytes) -> RowUsage:
    """Classify one output line and read its usage; never raises."""
    return parse_span(raw, 0, len(raw))


def parse_span(buf: bytes, start: int, end: int, view: memoryview | None = None) -> RowUsage:
    """`parse_row(buf[start:end])` without copying the line out of a larger buffer (`view` = memoryview(buf))."""
    try:
        if view is None:
            view = memoryview(buf)
        response = trailing_response(buf, start, end, view)
        if response is not None:
            return usage_of(response)
        return _parse_full(view[start:end])
    except Exception as exc:  # parsing must never stop a metering; anything unforeseen is a malformed line
        return RowUsage(MALFORMED, error=f"{type(exc).__name__}: {exc}")


def trailing_response(buf: bytes, start: int, end: int, view: memoryview) -> Response | None:
    """The fast path: the row's `response` when it is the line's last member (see above), else None.

    None means "parse the whole line" (`parse_span`), never "no response".
    """
    at = buf.rfind(_RESPONSE_KEY, start, end)
    if at > start and buf[at - 1] != _BACKSLASH and buf[start] == _OPEN and buf[end - 1] == _CLOSE:
        try:
            return _decode_response(view[at + _RESPONSE_VALUE_AT:end - 1])
        except msgspec.MsgspecError:
            pass  # a nested "response", or a bad one: the full parse decides
    return None


def _parse_full(line: memoryview) -> RowUsage:
    try:
        row = _decode_row(line)
    except msgspec.MsgspecError as exc:
        return RowUsage(MALFORMED, error=str(exc))
    if row.response is not None:
        return usage_of(row.response)
    try:
        if row.predictions:
            return _from_predictions(_decode_predictions(row.predictions),
                                     _decode_instance(row.instance) if row.instance else None)
        status = _decode_status(row.status) if row.status else None
    except msgspec.MsgspecError as exc:
        return RowUsage(MALFORMED, error=str(exc))
    return RowUsage(FAILED) if status else RowUsage(NO_USAGE)


def usage_of(response: Response) -> RowUsage:
    """The usage a row's response reports (`no_usage` without usageMetadata)."""
    usage = response.usageMetadata
    if usage is None:
        return RowUsage(NO_USAGE, model_version=response.modelVersion)
    cache_details = usage.cacheTokensDetails
    return RowUsage(  # positional (the fields' order), as this runs on every row the scanner leaves to Python
        SUCCEEDED,
        usage.promptTokenCount or 0,  # input
        usage.cachedContentTokenCount or 0,  # cached_input
        usage.candidatesTokenCount or 0,  # output
        usage.thoughtsTokenCount or 0,  # reasoning
        usage.toolUsePromptTokenCount or 0,  # tool_use_input
        audio_tokens(usage.promptTokensDetails),  # audio_input
        audio_tokens(cache_details) if cache_details else 0,  # audio_cached_input
        0,
        0,
        response.modelVersion,
    )


def audio_tokens(details: list[Detail] | None) -> int:
    """The AUDIO tokenCount of a per-modality list (0 when absent)."""
    total = 0
    if details:
        for detail in details:
            if detail.modality == "AUDIO":
                total += detail.tokenCount or 0
    return total


def _from_predictions(predictions: list[_Prediction], instance: _Instance | None) -> RowUsage:
    tokens = 0
    found = False
    for prediction in predictions:
        embeddings = prediction.embeddings
        statistics = embeddings.statistics if embeddings is not None else None
        count = statistics.token_count if statistics is not None else None
        if count is None:
            continue
        if isinstance(count, float) and not count.is_integer():
            return RowUsage(MALFORMED, error=f"statistics.token_count {count} is not a whole number")
        tokens += int(count)
        found = True
    if not found:
        return RowUsage(NO_USAGE)
    content = instance.content if instance is not None else None
    return RowUsage(SUCCEEDED, embedding_tokens=tokens, embedding_characters=len(content) if content else 0)
