"""The generated model catalog (`VBP_MODELS_FILE`): TOML that tomllib reads, the same names on every run."""

from __future__ import annotations

import tomllib
from pathlib import Path

from proxy.emulator.catalog import deployments, write_catalog
from proxy.emulator.state import KNOWN_MODELS


def test_the_catalog_names_every_emulated_deployment(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "models.toml", base_url="http://127.0.0.1:8790", project="vbp-emulator",
                         azure_token_quota=5000)
    assert path.is_absolute()
    catalog = tomllib.loads(path.read_text())["deployment"]
    by_name = {entry["name"]: entry for entry in catalog}
    assert len(by_name) == len(catalog)  # names are unique
    vertex = [e for e in catalog if e["provider"] == "vertex"]
    assert [e["model"] for e in vertex] == list(KNOWN_MODELS)
    assert by_name["vertex-gemini-2.5-flash"] == {"name": "vertex-gemini-2.5-flash", "provider": "vertex",
                                                  "model": "gemini-2.5-flash", "project": "vbp-emulator",
                                                  "location": "us-central1"}
    assert by_name["openai-gpt-4o-mini"] == {"name": "openai-gpt-4o-mini", "provider": "openai",
                                             "model": "gpt-4o-mini",
                                             "base_url": "http://127.0.0.1:8790/openai-api/v1",
                                             "api_key_env": "VBP_EMULATOR_OPENAI_KEY"}
    assert by_name["openai-text-embedding-3-small"]["model"] == "text-embedding-3-small"
    for resource in ("eastus", "westus", "swedencentral"):
        assert by_name[f"azure-{resource}-gpt-4o-mini"] == {
            "name": f"azure-{resource}-gpt-4o-mini", "provider": "azure", "model": "gpt-4o-mini",
            "base_url": f"http://127.0.0.1:8790/azure/{resource}", "deployment": "gpt-4o-mini-batch",
            "api_version": "2024-10-21", "api_key_env": "VBP_EMULATOR_AZURE_KEY", "enqueued_token_quota": 5000}
    assert sum(e["model"] == "gpt-4o-mini" and e["provider"] == "azure" for e in catalog) == 3


def test_names_and_models_do_not_depend_on_the_run() -> None:
    def names(base_url: str, quota: int) -> list[tuple[str, str]]:
        return [(d["name"], d["model"]) for d in deployments(base_url=base_url, project="p", azure_token_quota=quota)]

    assert names("http://127.0.0.1:1", 1) == names("http://127.0.0.1:2", 2)
