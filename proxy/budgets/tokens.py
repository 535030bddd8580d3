"""The input-token estimate of a request's text, without the model's tokenizer.

No Gemini tokenizer installs from the package registries and runs offline (the SDKs fetch theirs from the
internet), so text is counted by a documented rule instead: one token per run of word characters (letters,
digits, `_`) and one per other non-space character. "Hello world!" is 3 tokens, "You are a helpful assistant."
6. Gemini's tokenizer gives common English words one token each and splits off punctuation, so the rule sits
close to it; rare words cost Vertex more than one token, so the rule errs low, which is what the low end of an
estimate needs (it must never be above the metered cost of ordinary text).

Speed: an estimate reads the whole input before a create, so the count runs in C. The common lines are read by
the compiled scanner (`_estscan.c`), which counts this very rule on the JSON text, escapes decoded; here (the
other lines, and every line without the compiled part) the text's UTF-8 bytes are mapped with `bytes.translate`
and counted with `bytes.count`. The tests hold the two to the same counts. Every byte of a multi-byte character
counts as a word character (accented letters and CJK are word characters; a rare Unicode punctuation mark or
space is then merged into its neighbour, which only lowers the count).

Media parts are counted with Vertex's published per-part figures: an image or a document page 258 tokens,
audio 32 tokens a second (inline audio: a second per started 16,000 bytes; an audio or video file: 10 seconds),
a video file 2,630 tokens (10 seconds at 263).
"""

from __future__ import annotations

import math
import string

_WORD_BYTES = (string.ascii_letters + string.digits + "_").encode() + bytes(range(0x80, 0x100))
_SPACE_BYTES = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
# word bytes -> "a", everything else -> " ": word runs are then the places where " a" occurs
_RUNS = bytes.maketrans(_WORD_BYTES + bytes(set(range(256)) - set(_WORD_BYTES)),
                        b"a" * len(_WORD_BYTES) + b" " * (256 - len(_WORD_BYTES)))
_NOT_PUNCTUATION = _WORD_BYTES + _SPACE_BYTES

IMAGE_TOKENS = 258
DOCUMENT_TOKENS = 258
VIDEO_TOKENS = 2_630
AUDIO_TOKENS_PER_SECOND = 32
AUDIO_BYTES_PER_SECOND = 16_000
MEDIA_FILE_SECONDS = 10


def text_tokens(text: str) -> int:
    """Tokens of a text: one per run of word characters, one per other non-space character."""
    try:
        data = text.encode()  # free for the usual text: CPython keeps the UTF-8 of an ASCII str
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        data = text.encode("utf-8", "surrogatepass")
    punctuation = len(data.translate(None, _NOT_PUNCTUATION))
    return (b" " + data.translate(_RUNS)).count(b" a") + punctuation


def media_tokens(mime_type: str, *, inline_base64_chars: int | None) -> tuple[bool, int]:
    """`(is_audio, tokens)` of an inline part (`inline_base64_chars` of base64 data) or a file part (None)."""
    kind = mime_type.split("/", 1)[0].lower()
    if kind == "audio":
        if inline_base64_chars is None:
            seconds = MEDIA_FILE_SECONDS
        else:
            seconds = max(1, math.ceil(inline_base64_chars * 3 // 4 / AUDIO_BYTES_PER_SECOND))
        return True, AUDIO_TOKENS_PER_SECOND * seconds
    if kind == "image":
        return False, IMAGE_TOKENS
    if kind == "video":
        return False, VIDEO_TOKENS
    return False, DOCUMENT_TOKENS
