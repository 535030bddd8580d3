"""What clients written for LiteLLM's Vertex batches send, accepted unchanged.

- `custom_llm_provider` in the JSON body, a form field, a header, or the query (`?provider=` /
  `?custom_llm_provider=`): `vertex_ai` is what this door runs; any other value is refused by name (400) until
  other providers are served.
- File ids that are gs:// URIs (LiteLLM's file id is the URI of the uploaded file), percent-encoded once or
  twice in a path: decoded here, then looked up by the stored URI, for the caller's own team only.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote

from starlette.requests import Request

from proxy.errors import InvalidArgument

PROVIDER_FIELD = "custom_llm_provider"
SERVED_PROVIDERS = ("vertex_ai",)
_QUERY_NAMES = ("provider", PROVIDER_FIELD)


def check_provider(request: Request, *more: object) -> None:
    """Refuse any provider named in the request's header or query, or in `more` (body or form values), but ours."""
    values: list[object] = [request.headers.get(PROVIDER_FIELD.replace("_", "-")), request.headers.get(PROVIDER_FIELD)]
    values += [request.query_params.get(name) for name in _QUERY_NAMES]
    values += list(more)
    for value in _named(values):
        if value not in SERVED_PROVIDERS:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise InvalidArgument(f"custom_llm_provider {shown!r} is not served here; this proxy runs batches on "
                                  f"{', '.join(SERVED_PROVIDERS)} only.", param=PROVIDER_FIELD,
                                  code="unsupported_provider")


def _named(values: Iterable[object]) -> Iterable[str]:
    for value in values:
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidArgument("custom_llm_provider must be a string.", param=PROVIDER_FIELD)
        yield value


def decode_file_id(raw: str) -> str:
    """A file id as given: `file-...`, or a gs:// URI possibly still percent-encoded once more (LiteLLM clients
    encode it once or twice; the server has decoded one level)."""
    value = raw
    for _ in range(2):
        if value.startswith("gs://") or "%" not in value:
            break
        value = unquote(value)
    return value
