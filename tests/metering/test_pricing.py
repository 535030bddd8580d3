"""The pricing table: the shipped files, rates in effect at a date, and validation on load."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from proxy.metering.pricing import PRICING_DIR_ENV, PricingError, PricingTable, default_pricing_dir
from proxy.settings import Settings

REPO_PRICING = Path(__file__).resolve().parents[2] / "pricing"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
FLASH_RATES = ('{ input = "0.30", audio_input = "1.00", output = "2.50", cached_input = "0.03", '
               'cached_audio_input = "0.10" }')


def write_model(directory: Path, name: str, rows: str, *, header: str | None = None) -> Path:
    header = header if header is not None else f'model = "{name}"\nkind = "generative"\nunit = "token"\n'
    path = directory / f"{name}.toml"
    path.write_text(header + rows)
    return path


def row(effective_from: str, *, on_demand: str = FLASH_RATES, batch: str = FLASH_RATES, extra: str = "") -> str:
    return (f'\n[[rates]]\neffective_from = {effective_from}\nsource = "test"\nread_on = 2026-11-21\n'
            f"on_demand = {on_demand}\nbatch = {batch}\n{extra}")


def test_shipped_table_loads_every_model() -> None:
    table = PricingTable.load(REPO_PRICING)
    openai_models = ["gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o4-mini",
                     "text-embedding-3-large", "text-embedding-3-small"]
    assert sorted(table.models) == [("azure", model) for model in openai_models] + [
        ("openai", model) for model in openai_models] + [("vertex", model) for model in [
            "gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-2.5-flash", "gemini-2.5-flash-lite",
            "gemini-2.5-pro", "gemini-embedding-001", "text-embedding-005"]]
    snapshots = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
                 "gpt-4.1": "gpt-4.1-2025-04-14", "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
                 "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14", "o4-mini": "o4-mini-2025-04-16"}
    assert table.aliases == {("vertex", "gemini-2.0-flash-001"): "gemini-2.0-flash",
                             ("vertex", "gemini-2.0-flash-lite-001"): "gemini-2.0-flash-lite",
                             **{(provider, snapshot): model for model, snapshot in snapshots.items()
                                for provider in ("openai", "azure")}}
    assert len(table.version) == 64


def test_default_dir_is_the_repository_pricing_folder_or_the_setting(tmp_path: Path) -> None:
    assert default_pricing_dir() == REPO_PRICING == Settings.from_env({}).pricing_path
    assert PricingTable.load().version == PricingTable.load(REPO_PRICING).version
    assert Settings.from_env({PRICING_DIR_ENV: str(tmp_path)}).pricing_path == tmp_path
    with pytest.raises(PricingError, match="no \\*.toml"):
        PricingTable.load(Settings.from_env({PRICING_DIR_ENV: str(tmp_path)}).pricing_path)


def test_shipped_rates_in_pico_per_unit() -> None:
    table = PricingTable.load(REPO_PRICING)
    pro = table.rates_for("vertex", "gemini-2.5-pro", NOW)
    assert pro is not None and pro.long_context is not None
    assert (pro.batch.input, pro.batch.output, pro.batch.cached_input) == (625_000, 5_000_000, 125_000)
    assert pro.long_context.above_prompt_tokens == 200_000
    assert (pro.long_context.batch.input, pro.long_context.batch.output) == (1_250_000, 7_500_000)
    lite = table.rates_for("vertex", "gemini-2.5-flash-lite", NOW)
    assert lite is not None
    assert (lite.batch.audio_input, lite.on_demand.audio_input) == (50_000, 300_000)
    flash2 = table.rates_for("vertex", "gemini-2.0-flash-001", NOW)
    assert flash2 is not None and flash2.model == "gemini-2.0-flash"
    assert flash2.batch.cached_input == flash2.batch.input == 75_000
    text005 = table.rates_for("vertex", "text-embedding-005", NOW)
    assert text005 is not None
    assert (text005.unit, text005.kind, text005.batch.input, text005.on_demand.input) == (
        "character", "embedding", 25_000, 25_000)
    assert "UNCONFIRMED" in dict(text005.notes)["batch.input"]
    embedding = table.rates_for("vertex", "gemini-embedding-001", NOW)
    assert embedding is not None and (embedding.batch.input, embedding.on_demand.input) == (120_000, 150_000)


def test_rates_identify_themselves() -> None:
    rates = PricingTable.load(REPO_PRICING).rates_for("vertex", "publishers/google/models/gemini-2.5-flash@001", NOW)
    assert rates is not None
    assert rates.key == "gemini-2.5-flash@2025-01-01"
    assert rates.describe()["file"] == "gemini-2.5-flash.toml"
    assert rates.describe()["effective_from"] == "2025-01-01"
    assert "cloud.google.com/vertex-ai/generative-ai/pricing" in rates.source


def test_unknown_model_has_no_rates() -> None:
    table = PricingTable.load(REPO_PRICING)
    assert table.rates_for("vertex", "gemini-does-not-exist", NOW) is None
    assert table.rates_for("vertex", "gemini-2.5-flash", datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) is None


def test_rates_in_effect_at_a_date(tmp_path: Path) -> None:
    cheaper = ('{ input = "0.20", audio_input = "1.00", output = "2.00", cached_input = "0.02", '
               'cached_audio_input = "0.10" }')
    write_model(tmp_path, "m", row("2026-03-01", batch=cheaper) + row("2025-01-01"))
    table = PricingTable.load(tmp_path)
    before = table.rates_for("vertex", "m", datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC))
    on_the_day = table.rates_for("vertex", "m", datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    assert before is not None and on_the_day is not None
    assert (before.effective_from, before.batch.input) == (date(2025, 1, 1), 300_000)
    assert (on_the_day.effective_from, on_the_day.batch.input) == (date(2026, 3, 1), 200_000)
    # The day is a UTC day: 23:30 on Feb 28 at UTC-1 is already March 1st in UTC.
    west = timezone(timedelta(hours=-1))
    shifted = table.rates_for("vertex", "m", datetime(2026, 2, 28, 23, 30, tzinfo=west))
    assert shifted is not None and shifted.effective_from == date(2026, 3, 1)
    naive = table.rates_for("vertex", "m", datetime(2026, 3, 1, 0, 0))
    assert naive is not None and naive.effective_from == date(2026, 3, 1)


def test_version_changes_with_the_files(tmp_path: Path) -> None:
    shutil.copytree(REPO_PRICING, tmp_path / "p")
    first = PricingTable.load(tmp_path / "p").version
    assert PricingTable.load(tmp_path / "p").version == first
    path = tmp_path / "p" / "gemini-2.5-flash.toml"
    path.write_text(path.read_text().replace('output = "1.25"', 'output = "1.30"'))
    assert PricingTable.load(tmp_path / "p").version != first


@pytest.mark.parametrize(("content", "message"), [
    (row("2025-01-01", extra='color = "red"\n'), "unknown key"),
    (row("2025-01-01", batch='{ input = "0.30", output = "2.50" }'), "missing audio_input"),
    (row("2025-01-01", batch=FLASH_RATES.replace('"0.03"', '"0.0000001"')), "more than 6 decimals"),
    (row("2025-01-01", batch=FLASH_RATES.replace('"0.03"', "0.03")), "as a string"),
    (row("2025-01-01") + row("2025-01-01"), "overlapping dates"),
    (row("2025-01-01T00:00:00Z"), "bare TOML date"),
    (row("2025-01-01", extra='[rates.notes]\n"batch.nothing" = "x"\n'), "names no rate"),
    (row("2025-01-01", extra="[rates.long_context]\nabove_prompt_tokens = 0\n"
                             f"on_demand = {FLASH_RATES}\nbatch = {FLASH_RATES}\n"), "positive integer"),
    ("not = [toml", "not valid TOML"),
])
def test_invalid_files_are_refused_with_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    write_model(tmp_path, "m", content)
    with pytest.raises(PricingError, match=message) as caught:
        PricingTable.load(tmp_path)
    assert "m.toml" in str(caught.value)


def test_header_errors(tmp_path: Path) -> None:
    write_model(tmp_path, "m", row("2025-01-01"), header='model = "m"\nkind = "generative"\nunit = "character"\n')
    with pytest.raises(PricingError, match="only for embedding"):
        PricingTable.load(tmp_path)
    write_model(tmp_path, "m", row("2025-01-01"), header='model = "m"\nkind = "chat"\nunit = "token"\n')
    with pytest.raises(PricingError, match="kind"):
        PricingTable.load(tmp_path)


def test_an_alias_may_not_be_claimed_twice(tmp_path: Path) -> None:
    write_model(tmp_path, "a", row("2025-01-01"),
                header='model = "a"\nkind = "generative"\nunit = "token"\naliases = ["shared"]\n')
    write_model(tmp_path, "b", row("2025-01-01"),
                header='model = "b"\nkind = "generative"\nunit = "token"\naliases = ["shared"]\n')
    with pytest.raises(PricingError, match="already defined in a.toml"):
        PricingTable.load(tmp_path)


def test_embedding_models_take_one_rate(tmp_path: Path) -> None:
    header = 'model = "e"\nkind = "embedding"\nunit = "character"\n'
    write_model(tmp_path, "e", row("2025-01-01", on_demand='{ input = "0.025" }', batch='{ input = "0.02" }'),
                header=header)
    rates = PricingTable.load(tmp_path).rates_for("vertex", "e", NOW)
    assert rates is not None and (rates.batch.input, rates.on_demand.input) == (20_000, 25_000)
    write_model(tmp_path, "e", row("2025-01-01", on_demand=FLASH_RATES, batch='{ input = "0.02" }'), header=header)
    with pytest.raises(PricingError, match="unknown key"):
        PricingTable.load(tmp_path)


def test_a_model_of_the_same_name_under_another_provider_is_another_price(tmp_path: Path) -> None:
    # No `provider` key: the file is Vertex's, as every file written before providers were named.
    write_model(tmp_path, "m", row("2025-01-01"))
    other = FLASH_RATES.replace('output = "2.50"', 'output = "9.00"')
    write_model(tmp_path, "m-openai", row("2025-01-01", on_demand=other, batch=other),
                header='provider = "openai"\nmodel = "m"\nkind = "generative"\nunit = "token"\naliases = ["m-1"]\n')
    table = PricingTable.load(tmp_path)
    assert sorted(table.models) == [("openai", "m"), ("vertex", "m")]
    vertex, openai = table.rates_for("vertex", "m", NOW), table.rates_for("openai", "m", NOW)
    assert vertex is not None and openai is not None
    assert (vertex.provider, vertex.batch.output, vertex.file) == ("vertex", 2_500_000, "m.toml")
    assert (openai.provider, openai.batch.output, openai.file) == ("openai", 9_000_000, "m-openai.toml")
    # An alias belongs to its provider only; a provider with no table for the model has no price.
    assert table.rates_for("openai", "m-1", NOW) == openai
    assert table.rates_for("vertex", "m-1", NOW) is None
    assert table.rates_for("azure", "m", NOW) is None
    # Vertex's model resource names are read by the Vertex provider; another provider's names are taken as given.
    assert table.rates_for("vertex", "publishers/google/models/m@001", NOW) == vertex
    assert table.rates_for("openai", "publishers/google/models/m@001", NOW) is None
