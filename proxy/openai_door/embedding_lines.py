"""One OpenAI embeddings body -> its inputs, each one Vertex embedding instance line `{"content": ...}`.

`input` is a string or a list of strings; each string is one Vertex line (the instance, nothing else: an extra
key would reach the model), and the output answers a list with one `data` entry per input, in order. Token arrays
(lists of integers) and `dimensions` are refused (a Vertex batch sets the output size per job, not per line), as
is `encoding_format: base64`; `encoding_format: float` and `user` are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.openai_door.rejections import invalid, unsupported

HARMLESS: dict[str, tuple[Any, ...] | None] = {"user": None, "encoding_format": ("float",)}
REFUSED = {
    "dimensions": "a Vertex batch job sets the embedding size per job, not per line",
    "encoding_format": "only \"float\" embeddings are returned",
}


def embedding_inputs(body: Mapping[str, Any]) -> list[str]:
    """The texts to embed, in order (LineProblem for a body the conversion cannot honour)."""
    for key, value in body.items():
        if key in ("model", "input"):
            continue
        allowed = HARMLESS.get(key, ())
        if key in HARMLESS and (allowed is None or value in allowed):
            continue
        raise unsupported(f"body.{key}", REFUSED.get(key, "the conversion to Vertex has no equivalent for it"))
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if isinstance(inputs, list) and inputs and all(isinstance(item, str) for item in inputs):
        for at, item in enumerate(inputs):
            if not item:
                raise invalid("body.input" if isinstance(value, str) else f"body.input[{at}]", "is an empty string")
        return inputs
    if isinstance(inputs, list) and inputs and all(isinstance(item, int | list) for item in inputs):
        raise unsupported("body.input", "token arrays cannot be sent to Vertex embedding models; send the text")
    raise invalid("body.input", "must be a string or a non-empty list of strings")
