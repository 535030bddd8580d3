"""The emulator's deterministic token rule: what `usageMetadata` a request line gets, computable from the line alone.

Tests compute expected figures from their own input with this rule (or by hand), so every number below is
part of the emulator's contract. The rule, for a GenerateContentRequest `request` and a model id:

1. Text tokens. A text counts one token per match of the regular expression ``\\w+|[^\\w\\s]``: every run of
   letters/digits/underscores is one token and every other non-space character is one token.
   "Hello world!" is 3 tokens; "You are a helpful assistant." is 6.
2. Prompt tokens, per modality, over every part of `contents[*].parts` and `systemInstruction.parts`
   (snake_case spellings accepted): a `text` part adds its text tokens to TEXT. An `inlineData` or
   `fileData` part is counted by its `mimeType`:
     - `audio/*`  -> AUDIO, 32 tokens per started second, a second being 16,000 bytes of decoded inlineData
                    (at least 1 second); a `fileData` audio part counts as 10 seconds (320 tokens).
     - `image/*`  -> IMAGE, 258 tokens per part.
     - `video/*`  -> VIDEO, 2,630 tokens per part.
     - any other  -> DOCUMENT, 258 tokens per part.
   Other parts (function calls, ...) count 0. `promptTokenCount` is the sum over modalities; a long text
   therefore goes past 200,000 tokens with 200,001 words.
3. Cached tokens. When the request names a `cachedContent`, each modality's cached share is
   floor(3 * tokens / 4); `cachedContentTokenCount` is their sum and is INCLUDED in `promptTokenCount`.
   Without `cachedContent` nothing is cached.
4. Candidates. The natural answer length is min(1000, 20 + promptTokenCount // 10) tokens (TEXT).
   With `generationConfig.maxOutputTokens` = M > 0, `candidatesTokenCount` = min(natural, M) and the
   finish reason is MAX_TOKENS when M < natural, else STOP.
5. Thoughts. Models whose id starts with `gemini-2.5` or `gemini-3` can think; they think by default unless
   the id contains `lite`. `generationConfig.thinkingConfig.thinkingBudget` B: 0 turns thinking off, B > 0
   caps it and turns it on (also for a lite model), -1 or absent keeps the default. A thinking line's natural
   thoughts are T = 4 * A, A being its natural answer length of rule 4 (capped at B when B > 0).
   Thinking counts INSIDE `maxOutputTokens`, as on Vertex (a Gemini 2.5 line can end MAX_TOKENS while it is
   still thinking: googleapis/python-genai issues #782 and #811). So when a thinking line sets M > 0 and
   T + A > M, thought and answer share the cap in the natural proportion: `thoughtsTokenCount` =
   floor(M * T / (T + A)) kept within [1, M - 1], `candidatesTokenCount` = M - thoughts (both above zero
   whenever M >= 2; M = 1 leaves one answer token and no thoughts), and the finish reason is MAX_TOKENS.
   Otherwise (no cap, or T + A <= M) rule 4 stands and `thoughtsTokenCount` = T. Either way a line never
   reports more output (candidates + thoughts) than its cap.
6. `totalTokenCount` = promptTokenCount + candidatesTokenCount + thoughtsTokenCount; `trafficType` ON_DEMAND.
   As in proto3 JSON, a zero count and an empty per-modality list are left out.

Embeddings: `statistics.token_count` is the text-token count of `content`, at most 2,048; longer content is
truncated (`truncated: true`, token_count 2048).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
MODALITIES = ("TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT")
AUDIO_TOKENS_PER_SECOND = 32
AUDIO_BYTES_PER_SECOND = 16_000
AUDIO_FILE_SECONDS = 10
IMAGE_TOKENS = 258
VIDEO_TOKENS = 2_630
DOCUMENT_TOKENS = 258
MAX_NATURAL_ANSWER = 1000
THOUGHTS_PER_CANDIDATE = 4
EMBEDDING_TOKEN_LIMIT = 2048


class InvalidRequest(ValueError):
    """A request line the rule cannot count (Vertex would answer it with a failed row)."""


def text_tokens(text: str) -> int:
    """Tokens of a text: one per word run, one per other non-space character."""
    return sum(1 for _ in TOKEN_RE.finditer(text))


def media_tokens(mime_type: str, *, inline_data: str | None) -> tuple[str, int]:
    """The modality and token count of one inlineData (base64 `inline_data`) or fileData (None) part."""
    kind = mime_type.split("/", 1)[0].lower()
    if kind == "audio":
        if inline_data is None:
            seconds = AUDIO_FILE_SECONDS
        else:
            try:
                size = len(base64.b64decode(inline_data, validate=True))
            except (binascii.Error, ValueError):
                raise InvalidRequest("inlineData.data is not valid base64") from None
            seconds = max(1, math.ceil(size / AUDIO_BYTES_PER_SECOND))
        return "AUDIO", AUDIO_TOKENS_PER_SECOND * seconds
    if kind == "image":
        return "IMAGE", IMAGE_TOKENS
    if kind == "video":
        return "VIDEO", VIDEO_TOKENS
    return "DOCUMENT", DOCUMENT_TOKENS


@dataclass(frozen=True)
class Usage:
    """The token figures of one answered request line."""

    prompt: dict[str, int]
    cached: dict[str, int]
    candidates: int
    thoughts: int
    finish_reason: str

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompt.values())

    @property
    def cached_tokens(self) -> int:
        return sum(self.cached.values())

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.candidates + self.thoughts

    def metadata(self) -> dict[str, Any]:
        """`usageMetadata` as Vertex writes it (camelCase, keys sorted, zero fields left out)."""
        fields: dict[str, Any] = {
            "cacheTokensDetails": _details(self.cached),
            "cachedContentTokenCount": self.cached_tokens,
            "candidatesTokenCount": self.candidates,
            "candidatesTokensDetails": _details({"TEXT": self.candidates}),
            "promptTokenCount": self.prompt_tokens,
            "promptTokensDetails": _details(self.prompt),
            "thoughtsTokenCount": self.thoughts,
            "totalTokenCount": self.total_tokens,
            "trafficType": "ON_DEMAND",
        }
        return {key: value for key, value in fields.items() if value}


def _details(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    return [{"modality": m, "tokenCount": counts[m]} for m in MODALITIES if counts.get(m)]


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def prompt_tokens(request: Mapping[str, Any]) -> dict[str, int]:
    """Prompt tokens per modality (rule 2)."""
    counts = dict.fromkeys(MODALITIES, 0)
    contents = request.get("contents") or []
    system = _get(request, "systemInstruction", "system_instruction")
    blocks = [*contents, system] if isinstance(system, Mapping) else list(contents)
    for block in blocks:
        if not isinstance(block, Mapping):
            raise InvalidRequest("each content must be an object")
        for part in block.get("parts") or []:
            if not isinstance(part, Mapping):
                raise InvalidRequest("each part must be an object")
            text = part.get("text")
            if isinstance(text, str):
                counts["TEXT"] += text_tokens(text)
                continue
            inline = _get(part, "inlineData", "inline_data")
            file = _get(part, "fileData", "file_data")
            media = inline if isinstance(inline, Mapping) else file if isinstance(file, Mapping) else None
            if media is None:
                continue
            mime = _get(media, "mimeType", "mime_type")
            if not isinstance(mime, str) or not mime:
                raise InvalidRequest("inlineData and fileData need a mimeType")
            data = media.get("data") if media is inline else None
            if media is inline and not isinstance(data, str):
                raise InvalidRequest("inlineData needs base64 data")
            modality, tokens = media_tokens(mime, inline_data=data)
            counts[modality] += tokens
    return {m: n for m, n in counts.items() if n}


def thinks(model: str, generation_config: Mapping[str, Any]) -> tuple[bool, int | None]:
    """Whether a model thinks for this request, and the thinking budget cap if one applies (rule 5)."""
    capable = model.startswith(("gemini-2.5", "gemini-3"))
    thinking = _get(generation_config, "thinkingConfig", "thinking_config") or {}
    budget = _get(thinking, "thinkingBudget", "thinking_budget") if isinstance(thinking, Mapping) else None
    if not capable:
        return False, None
    if isinstance(budget, int) and budget == 0:
        return False, None
    if isinstance(budget, int) and budget > 0:
        return True, budget
    return "lite" not in model, None


def usage_for(model: str, request: Mapping[str, Any]) -> Usage:
    """The usage the emulator reports for one GenerateContentRequest on `model` (a bare model id)."""
    prompt = prompt_tokens(request)
    total_prompt = sum(prompt.values())
    cached_content = _get(request, "cachedContent", "cached_content")
    cached = {m: 3 * n // 4 for m, n in prompt.items()} if cached_content else {}
    generation = _get(request, "generationConfig", "generation_config") or {}
    if not isinstance(generation, Mapping):
        raise InvalidRequest("generationConfig must be an object")
    natural = min(MAX_NATURAL_ANSWER, 20 + total_prompt // 10)
    limit = _get(generation, "maxOutputTokens", "max_output_tokens")
    cap = limit if isinstance(limit, int) and limit > 0 else None
    thinking, budget = thinks(model, generation)
    natural_thoughts = THOUGHTS_PER_CANDIDATE * natural if thinking else 0
    if budget is not None:
        natural_thoughts = min(natural_thoughts, budget)
    candidates, thoughts, finish = natural, natural_thoughts, "STOP"
    if cap is not None and natural + natural_thoughts > cap:
        # Thinking and answer share the cap (rule 5); without thinking the answer alone is cut (rule 4).
        thoughts = min(cap - 1, max(1, cap * natural_thoughts // (natural + natural_thoughts))) if thoughts else 0
        candidates, finish = cap - thoughts, "MAX_TOKENS"
    return Usage(prompt=prompt, cached={m: n for m, n in cached.items() if n}, candidates=candidates,
                 thoughts=thoughts, finish_reason=finish)


def embedding_tokens(content: str) -> tuple[int, bool]:
    """`(token_count, truncated)` of an embedding instance's content."""
    count = text_tokens(content)
    if count > EMBEDDING_TOKEN_LIMIT:
        return EMBEDDING_TOKEN_LIMIT, True
    return count, False
