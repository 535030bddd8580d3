"""One deployment of the catalog: a model served by one upstream (a Vertex project/location, an OpenAI account, or
an Azure OpenAI resource's deployment), with the credentials to reach it and its queue quota."""

from __future__ import annotations

from dataclasses import dataclass

PROVIDERS = ("vertex", "openai", "azure")
AUTH_KEY, AUTH_ENTRA = "key", "entra"
OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Deployment:
    """A `[[deployment]]` table of the catalog, checked (see `proxy.catalog.load`)."""

    name: str  # unique; the ledger's `jobs.deployment` and reports' `--by deployment`
    provider: str  # vertex | openai | azure
    model: str  # what callers write in each line's `body.model`; also the pricing key
    weight: int = 1
    enqueued_token_quota: int | None = None  # the upstream's cap on queued tokens here (None: not capped)
    # vertex
    project: str = ""
    location: str = ""
    # openai and azure
    base_url: str = ""  # openai: its API base (`.../v1`); azure: the resource endpoint
    api_key_env: str = ""  # env var holding the key (read through the settings module)
    # azure
    deployment: str = ""  # the deployment name Azure wants in each line's `model`
    api_version: str = ""
    auth: str = AUTH_KEY  # azure: `key` (api-key header) or `entra` (azure-identity bearer tokens)

    @property
    def where(self) -> str:
        """Where it runs, as one string: a Vertex project/location, an OpenAI base URL, an Azure deployment's URL
        (never a key, nor the env var holding one)."""
        if self.provider == "vertex":
            return f"projects/{self.project}/locations/{self.location}"
        if self.provider == "azure":
            return f"{self.base_url.rstrip('/')}/openai/deployments/{self.deployment}"
        return self.base_url

    @property
    def upstream_model(self) -> str:
        """The `model` each line carries upstream: Azure wants its deployment's name, the others the model."""
        return self.deployment if self.provider == "azure" else self.model
