"""What differs between the OpenAI stand-in and each Azure OpenAI resource: ids, status codes, limits, line shapes,
and which names a line's `model` may take."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

# What the OpenAI stand-in serves, with the dated version a chat.completion names (embeddings name the model).
OPENAI_MODELS: Mapping[str, str] = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "o4-mini": "o4-mini-2025-04-16",
    "text-embedding-3-small": "text-embedding-3-small",
    "text-embedding-3-large": "text-embedding-3-large",
}
EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
# Each Azure resource's deployments: the name a line's `model` must be -> the model behind it.
AZURE_DEPLOYMENTS: Mapping[str, str] = {
    "gpt-4o-mini-batch": "gpt-4o-mini",
    "text-embedding-3-small-batch": "text-embedding-3-small",
}
# Three resources, so that placement has three quotas of one model to spread batches over.
AZURE_RESOURCES = ("eastus", "westus", "swedencentral")
# GA first, then the previews that have files and batches (the facts' list).
AZURE_API_VERSIONS = ("2024-10-21", "2024-07-01-preview", "2025-03-01-preview", "2025-04-01-preview")
OPENAI_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
                    "/v1/images/generations", "/v1/images/edits", "/v1/videos")
AZURE_ENDPOINTS = ("/chat/completions", "/embeddings", "/v1/chat/completions", "/v1/embeddings")
SERVED = ("chat/completions", "embeddings")  # what the stand-ins answer, as endpoint_kind gives it
_BASE62 = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Flavor:
    """One API dialect: `openai`, or `azure` for one resource."""

    name: str
    resource: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)  # line model name -> model
    endpoints: tuple[str, ...] = OPENAI_ENDPOINTS
    create_status: int = 200
    max_tasks: int = 50_000
    line_ids: bool = True             # output lines carry `"id": "batch_req_..."` (Azure's do not)
    content_filter: bool = False      # bodies carry Azure's content-filter results
    always_error_file: bool = False   # a completed batch has an error file even when it is empty (Azure)
    batch_usage: bool = True          # the batch carries `usage` totals (OpenAI, batches after 2025-09-07)

    @property
    def azure(self) -> bool:
        return self.name == "azure"

    def file_id(self) -> str:
        """`file-` + 22 base62 characters (OpenAI) or 32 hex digits (Azure)."""
        if self.azure:
            return f"file-{uuid.uuid4().hex}"
        return "file-" + "".join(secrets.choice(_BASE62) for _ in range(22))

    def batch_id(self) -> str:
        """`batch_` + 32 hex digits (OpenAI) or a dashed uuid (Azure)."""
        return f"batch_{uuid.uuid4()}" if self.azure else f"batch_{uuid.uuid4().hex}"

    def endpoint_kind(self, url: str) -> str:
        """`chat/completions`, `embeddings`, ...: a URL without its `/v1/` (Azure lines may leave it out)."""
        return url.removeprefix("/v1/").removeprefix("/")

    def model_behind(self, name: str) -> str | None:
        """The model a line's `model` names here (Azure: a deployment name), None when unknown."""
        return self.models.get(name)


def openai_flavor() -> Flavor:
    return Flavor(name="openai", models={model: model for model in OPENAI_MODELS})


def azure_flavor(resource: str) -> Flavor:
    return Flavor(name="azure", resource=resource, models=AZURE_DEPLOYMENTS, endpoints=AZURE_ENDPOINTS,
                  create_status=201, max_tasks=100_000, line_ids=False, content_filter=True,
                  always_error_file=True, batch_usage=False)


def is_embedding(model: str) -> bool:
    return "embedding" in model
