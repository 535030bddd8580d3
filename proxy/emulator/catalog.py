"""The model catalog (`VBP_MODELS_FILE`, TOML; format in the README) of the emulated deployments, written at start.

The same names and models on every run: each model of the Vertex stand-in as `vertex-<model>` (the service
account's project, us-central1); each model of the OpenAI stand-in as `openai-<model>`; each deployment of
each Azure resource as `azure-<resource>-<model>`. Only the URLs (the port) change from run to run.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proxy.emulator.openai_api.flavor import AZURE_API_VERSIONS, AZURE_DEPLOYMENTS, AZURE_RESOURCES, OPENAI_MODELS
from proxy.emulator.state import KNOWN_MODELS

OPENAI_KEY_ENV = "VBP_EMULATOR_OPENAI_KEY"
AZURE_KEY_ENV = "VBP_EMULATOR_AZURE_KEY"
VERTEX_LOCATION = "us-central1"
AZURE_API_VERSION = AZURE_API_VERSIONS[0]


def deployments(*, base_url: str, project: str, azure_token_quota: int) -> Iterator[dict[str, Any]]:
    """Every emulated deployment, as the catalog's `[[deployment]]` tables."""
    for model in KNOWN_MODELS:
        yield {"name": f"vertex-{model}", "provider": "vertex", "model": model, "project": project,
               "location": VERTEX_LOCATION}
    for model in OPENAI_MODELS:
        yield {"name": f"openai-{model}", "provider": "openai", "model": model,
               "base_url": f"{base_url}/openai-api/v1", "api_key_env": OPENAI_KEY_ENV}
    for resource in AZURE_RESOURCES:
        for deployment, model in AZURE_DEPLOYMENTS.items():
            yield {"name": f"azure-{resource}-{model}", "provider": "azure", "model": model,
                   "base_url": f"{base_url}/azure/{resource}", "deployment": deployment,
                   "api_version": AZURE_API_VERSION, "api_key_env": AZURE_KEY_ENV,
                   "enqueued_token_quota": azure_token_quota}


def render(tables: Iterator[dict[str, Any]]) -> str:
    """TOML text: one `[[deployment]]` per table (strings as JSON strings, which TOML reads alike)."""
    out = ["# The emulated deployments of `vbp emulator` (generated at start; edits are lost).\n"]
    for table in tables:
        out.append("\n[[deployment]]\n")
        for key, value in table.items():
            out.append(f"{key} = {json.dumps(value)}\n")
    return "".join(out)


def write_catalog(path: Path, *, base_url: str, project: str, azure_token_quota: int) -> Path:
    """Write the catalog; returns its absolute path."""
    path = path.resolve()
    path.write_text(render(deployments(base_url=base_url, project=project, azure_token_quota=azure_token_quota)))
    return path


def provider_first(path: Path, provider: str, target: Path) -> Path:
    """A copy of the catalog at `path` with `provider`'s deployments moved first, written to `target`: the door
    runs a model on its first deployment, so the models Azure shares with OpenAI (gpt-4o-mini) run on Azure."""
    tables = tomllib.loads(path.read_text())["deployment"]
    ordered = [t for t in tables if t["provider"] == provider] + [t for t in tables if t["provider"] != provider]
    target.write_text(render(iter(ordered)))
    return target.resolve()
