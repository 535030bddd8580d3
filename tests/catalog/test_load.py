"""The catalog loader: the emulator's generated catalog reads back whole; every bad field is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.catalog.load import CatalogError, load_catalog, parse_catalog
from proxy.emulator.catalog import write_catalog

VERTEX = 'provider = "vertex"\nmodel = "gemini-2.5-flash"\nproject = "proj-one"\nlocation = "us-central1"\n'
AZURE = ('provider = "azure"\nmodel = "gpt-4o-mini"\nbase_url = "https://res.openai.azure.com"\n'
         'deployment = "mini-batch"\napi_version = "2024-10-21"\napi_key_env = "AZ_KEY"\n')


def test_the_emulators_catalog_reads_back_with_every_deployment(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "models.toml", base_url="http://127.0.0.1:8123", project="emulated-project",
                         azure_token_quota=5000)
    catalog = load_catalog(path)
    assert len(catalog.deployments) == 23
    minis = catalog.serving("gpt-4o-mini")
    assert [d.name for d in minis] == ["openai-gpt-4o-mini", "azure-eastus-gpt-4o-mini", "azure-westus-gpt-4o-mini",
                                       "azure-swedencentral-gpt-4o-mini"]
    assert [d.upstream_model for d in minis] == ["gpt-4o-mini"] + ["gpt-4o-mini-batch"] * 3
    assert minis[1].enqueued_token_quota == 5000 and minis[1].base_url == "http://127.0.0.1:8123/azure/eastus"
    flash = catalog.named("vertex-gemini-2.5-flash")
    assert flash is not None and (flash.project, flash.location) == ("emulated-project", "us-central1")
    assert catalog.serving("no-such-model") == ()


def test_defaults_openai_base_url_weight_and_azure_key_auth() -> None:
    catalog = parse_catalog(f'[[deployment]]\nname = "az"\n{AZURE}\n[[deployment]]\nname = "oa"\n'
                            'provider = "openai"\nmodel = "gpt-4o"\napi_key_env = "OA_KEY"\n')
    azure, openai = catalog.deployments
    assert (azure.auth, azure.weight, azure.enqueued_token_quota) == ("key", 1, None)
    assert openai.base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(("text", "message"), [
    (f'[[deployment]]\nname = "v"\n{VERTEX}weight = 0\n',
     "models.toml:7: deployment 'v': field \"weight\": must be a whole number of at least 1, not 0"),
    ('[[deployment]]\nname = "v"\nprovider = "azur"\nmodel = "m"\n',
     "models.toml:3: deployment 'v': field \"provider\": must be one of vertex, openai, azure, not 'azur'"),
    (f'[[deployment]]\nname = "v"\n{VERTEX}deployment = "x"\n',
     "models.toml:7: deployment 'v': field \"deployment\": unknown for a vertex deployment (known: name, provider, "
     "model, weight, enqueued_token_quota, project, location)"),
    (f'[[deployment]]\nname = "v"\n{VERTEX}\n[[deployment]]\nname = "v"\n{VERTEX}',
     "models.toml:9: deployment 'v': field \"name\": already used by the deployment at line 1"),
    (f'[[deployment]]\nname = "a"\n{AZURE.replace("https://res", "http://res")}',
     "models.toml:5: deployment 'a': field \"base_url\": 'http://res.openai.azure.com': plain http is allowed only "
     "to a loopback host (keys are sent to it)"),
    ('[[deployment]]\nname = "a"\n' + AZURE.replace('api_key_env = "AZ_KEY"', ""),
     "models.toml:1: deployment 'a': field \"api_key_env\" is required for an azure deployment with auth = \"key\" "
     "(or set auth = \"entra\")"),
    ('[[deployment]]\nname = "v"\nprovider = "vertex"\nmodel = "m"\nproject = "proj-one"\n',
     "models.toml:1: deployment 'v': field \"location\" is required for a vertex deployment"),
    ('[[deployment]]\nprovider = "vertex"\n', "models.toml:1: deployment #1: field \"name\" is required"),
    ('[models]\nx = 1\n', "models.toml:1: unknown table or key 'models': the catalog holds only [[deployment]] tables"),
])
def test_a_bad_catalog_names_the_line_and_the_field(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    assert str(caught.value) == message


def test_not_toml_and_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"^models.toml: not valid TOML: "):
        parse_catalog("[[deployment]\n")
    with pytest.raises(CatalogError, match=r"missing.toml: cannot read the model catalog \(VBP_MODELS_FILE\)"):
        load_catalog(tmp_path / "missing.toml")
