"""The pricing table: per provider, model and effective-from date, on-demand and batch rates, from `pricing/*.toml`.

A file names its provider (`provider = "vertex"`, the default when absent, so older files keep working): a model of
the same name under another provider is another model, with its own price.

Rates are held as integer pUSD per unit (token or character), see `proxy.money`. The files' format is described
in `pricing/README.md`; everything in them is validated on load, and a mistake is a `PricingError` naming the
file and key.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from proxy.money import InexactRate, rate_to_pico_per_unit
from proxy.providers.registry import DEFAULT_PROVIDER, PROVIDERS, get_provider
from proxy.settings import shipped

PRICING_DIR_ENV = "VBP_PRICING_DIR"
KINDS = ("generative", "embedding")
UNITS = ("token", "character")
GENERATIVE_RATES = ("input", "audio_input", "output", "cached_input", "cached_audio_input")
EMBEDDING_RATES = ("input",)
_FILE_KEYS = {"provider", "model", "kind", "unit", "aliases", "max_output_tokens", "rates"}
_ROW_KEYS = {"effective_from", "source", "read_on", "on_demand", "batch", "long_context", "notes"}
_ROW_REQUIRED = ("effective_from", "source", "read_on", "on_demand", "batch")
_LONG_KEYS = {"above_prompt_tokens", "on_demand", "batch"}


class PricingError(ValueError):
    """A pricing file that cannot be trusted: unknown or missing keys, inexact rates, overlapping dates."""


def default_pricing_dir() -> Path:
    """The pricing tables shipped with the code (`Settings.pricing_path` is this unless VBP_PRICING_DIR is set)."""
    return shipped("pricing")


@dataclass(frozen=True)
class TierRates:
    """Integer pUSD per unit for one billing mode. Embedding models only use `input` (the others are 0)."""

    input: int
    audio_input: int = 0
    output: int = 0
    cached_input: int = 0
    cached_audio_input: int = 0


@dataclass(frozen=True)
class LongContext:
    """The higher tier: a row whose prompt is above `above_prompt_tokens` pays these rates for all its tokens."""

    above_prompt_tokens: int
    on_demand: TierRates
    batch: TierRates


@dataclass(frozen=True)
class Rates:
    """The rates of one model from one effective-from date: one row of the table, able to say which it is."""

    model: str
    effective_from: date
    source: str
    read_on: date
    kind: str
    unit: str
    on_demand: TierRates
    batch: TierRates
    long_context: LongContext | None = None
    notes: tuple[tuple[str, str], ...] = ()
    file: str = ""
    provider: str = DEFAULT_PROVIDER

    @property
    def key(self) -> str:
        """`model@effective_from`, what a job records as "the pricing row used"."""
        return f"{self.model}@{self.effective_from.isoformat()}"

    def describe(self) -> dict[str, str]:
        """A plain record of this row, to store beside a metering."""
        return {"model": self.model, "effective_from": self.effective_from.isoformat(),
                "source": self.source, "read_on": self.read_on.isoformat(), "file": self.file}


@dataclass(frozen=True)
class PricingTable:
    """Every model's rate rows (sorted by date), the aliases, and a hash of the files they came from. Models and
    aliases are keyed by (provider, model id)."""

    models: Mapping[tuple[str, str], tuple[Rates, ...]]
    aliases: Mapping[tuple[str, str], str]
    version: str
    directory: Path = field(default_factory=Path)
    # The most output tokens one request line can produce, per (provider, model id): an estimate's output bound.
    max_output: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None = None) -> PricingTable:
        """Read and validate every `*.toml` of a directory (default: `default_pricing_dir()`)."""
        directory = default_pricing_dir() if directory is None else Path(directory)
        if not directory.is_dir():
            raise PricingError(f"pricing directory {directory} does not exist (set {PRICING_DIR_ENV})")
        files = sorted(directory.glob("*.toml"))
        if not files:
            raise PricingError(f"pricing directory {directory} holds no *.toml file")
        digest = hashlib.sha256()
        models: dict[tuple[str, str], tuple[Rates, ...]] = {}
        aliases: dict[tuple[str, str], str] = {}
        owner: dict[tuple[str, str], str] = {}  # every (provider, id or alias) -> the file that claims it
        max_output: dict[tuple[str, str], int] = {}
        for path in files:
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise PricingError(f"{path.name}: cannot be read: {exc.strerror or exc}") from exc
            digest.update(f"{path.name}\0{len(content)}\0".encode())
            digest.update(content)
            provider, model, model_aliases, rows = _load_file(path, content)
            limit = _max_output(path.name, content, rows[0].kind)
            if limit is not None:
                max_output[provider, model] = limit
            for name in (model, *model_aliases):
                if (provider, name) in owner:
                    raise PricingError(f"{path.name}: model or alias {name!r} is already defined in "
                                       f"{owner[provider, name]}")
                owner[provider, name] = path.name
            models[provider, model] = rows
            aliases.update({(provider, alias): model for alias in model_aliases})
        return cls(models=models, aliases=aliases, version=digest.hexdigest(), directory=directory,
                   max_output=max_output)

    def canonical(self, provider: str, model_id: str) -> str | None:
        """The table's id for a provider's model id, alias or model name (`publishers/google/models/x@001`)."""
        name = get_provider(provider).model_id(model_id) if provider in PROVIDERS else model_id.strip()
        name = name.split("@", 1)[0]
        if (provider, name) in self.models:
            return name
        return self.aliases.get((provider, name))

    def max_output_tokens(self, provider: str, model_id: str) -> int | None:
        """The most output tokens (thinking included) one line of the model can produce; None when the table
        does not say (or does not know the model)."""
        name = self.canonical(provider, model_id)
        return None if name is None else self.max_output.get((provider, name))

    def rates_for(self, provider: str, model_id: str, at: datetime) -> Rates | None:
        """The rates of a provider's model in effect at `at` (a job's create time; naive means UTC), or None for a
        model the table does not price under that provider."""
        name = self.canonical(provider, model_id)
        if name is None:
            return None
        moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        day = moment.date()  # effective_from is a UTC calendar day, from its first instant
        chosen: Rates | None = None
        for rates in self.models[provider, name]:
            if rates.effective_from <= day:
                chosen = rates
        return chosen


def _load_file(path: Path, content: bytes) -> tuple[str, str, tuple[str, ...], tuple[Rates, ...]]:
    where = path.name
    try:
        data = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PricingError(f"{where}: not valid TOML: {exc}") from exc
    _check_keys(data, allowed=_FILE_KEYS, required=("model", "kind", "unit", "rates"), where=where)
    provider = _text(data.get("provider", DEFAULT_PROVIDER), f"{where}: provider")
    model = _text(data["model"], f"{where}: model")
    kind = _choice(data["kind"], KINDS, f"{where}: kind")
    unit = _choice(data["unit"], UNITS, f"{where}: unit")
    if unit == "character" and kind != "embedding":
        raise PricingError(f"{where}: unit 'character' is only for embedding models")
    raw_aliases = data.get("aliases", [])
    if not isinstance(raw_aliases, list):
        raise PricingError(f"{where}: aliases must be a list of strings")
    aliases = tuple(_text(alias, f"{where}: aliases") for alias in raw_aliases)
    raw_rows = data["rates"]
    if not isinstance(raw_rows, list) or not raw_rows:
        raise PricingError(f"{where}: rates must be a non-empty array of tables ([[rates]])")
    names = GENERATIVE_RATES if kind == "generative" else EMBEDDING_RATES
    rows = [_load_row(raw, provider=provider, model=model, kind=kind, unit=unit, names=names,
                      where=f"{where}: rates[{n}]", file=where)
            for n, raw in enumerate(raw_rows)]
    rows.sort(key=lambda rates: rates.effective_from)
    for earlier, later in zip(rows, rows[1:], strict=False):
        # Each row runs from its date until the next one: two rows on one date would overlap.
        if earlier.effective_from == later.effective_from:
            raise PricingError(f"{where}: two rate rows are effective from {later.effective_from} (overlapping dates)")
    return provider, model, aliases, tuple(rows)


def _max_output(where: str, content: bytes, kind: str) -> int | None:
    """The file's `max_output_tokens` (optional; an embedding model produces none, so 0 when absent)."""
    value = tomllib.loads(content.decode("utf-8")).get("max_output_tokens")
    if value is None:
        return 0 if kind == "embedding" else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PricingError(f"{where}: max_output_tokens must be a whole number of tokens (0 or more)")
    return value


def _load_row(raw: Any, *, provider: str, model: str, kind: str, unit: str, names: tuple[str, ...], where: str,
              file: str) -> Rates:
    if not isinstance(raw, dict):
        raise PricingError(f"{where}: must be a table")
    _check_keys(raw, allowed=_ROW_KEYS, required=_ROW_REQUIRED, where=where)
    effective_from = _date(raw["effective_from"], f"{where}.effective_from")
    read_on = _date(raw["read_on"], f"{where}.read_on")
    source = _text(raw["source"], f"{where}.source")
    on_demand = _tier(raw["on_demand"], names, f"{where}.on_demand")
    batch = _tier(raw["batch"], names, f"{where}.batch")
    long_context = None
    if "long_context" in raw:
        if kind != "generative":
            raise PricingError(f"{where}.long_context: only generative models have a long-context tier")
        long_context = _long_context(raw["long_context"], names, f"{where}.long_context")
    notes = _notes(raw.get("notes", {}), names, has_long=long_context is not None, where=f"{where}.notes")
    return Rates(provider=provider, model=model, effective_from=effective_from, source=source, read_on=read_on,
                 kind=kind, unit=unit, on_demand=on_demand, batch=batch, long_context=long_context, notes=notes,
                 file=file)


def _long_context(raw: Any, names: tuple[str, ...], where: str) -> LongContext:
    if not isinstance(raw, dict):
        raise PricingError(f"{where}: must be a table")
    _check_keys(raw, allowed=_LONG_KEYS, required=tuple(sorted(_LONG_KEYS)), where=where)
    threshold = raw["above_prompt_tokens"]
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold <= 0:
        raise PricingError(f"{where}.above_prompt_tokens: must be a positive integer of prompt tokens")
    return LongContext(above_prompt_tokens=threshold, on_demand=_tier(raw["on_demand"], names, f"{where}.on_demand"),
                       batch=_tier(raw["batch"], names, f"{where}.batch"))


def _tier(raw: Any, names: tuple[str, ...], where: str) -> TierRates:
    if not isinstance(raw, dict):
        raise PricingError(f"{where}: must be a table of rates")
    _check_keys(raw, allowed=set(names), required=names, where=where)
    values: dict[str, int] = {}
    for name in names:
        rate = raw[name]
        if not isinstance(rate, str):
            # A TOML float is binary: "0.1" as a float is not 0.1, so rates must be strings.
            raise PricingError(f"{where}.{name}: write the rate as a string (e.g. \"0.15\"), got {rate!r}")
        try:
            values[name] = rate_to_pico_per_unit(rate.strip())
        except InexactRate as exc:
            raise PricingError(f"{where}.{name}: {exc}") from exc
    return TierRates(**values)


def _notes(raw: Any, names: tuple[str, ...], *, has_long: bool, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise PricingError(f"{where}: must be a table of \"mode.rate\" = \"text\"")
    known = {f"{mode}.{name}" for mode in ("on_demand", "batch") for name in names}
    if has_long:
        known |= {f"long_context.{path}" for path in known}
    notes = []
    for key, text in raw.items():
        if key not in known:
            raise PricingError(f"{where}: {key!r} names no rate (one of {', '.join(sorted(known))})")
        notes.append((key, _text(text, f"{where}.{key}")))
    return tuple(sorted(notes))


def _check_keys(raw: dict[str, Any], *, allowed: set[str], required: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PricingError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    missing = [key for key in required if key not in raw]
    if missing:
        raise PricingError(f"{where}: missing {', '.join(missing)}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PricingError(f"{where}: must be a non-empty string")
    return value.strip()


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise PricingError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _date(value: Any, where: str) -> date:
    # tomllib gives a bare TOML date (2025-01-01) as `date`; a date-time would be ambiguous about its zone.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise PricingError(f"{where}: must be a bare TOML date such as 2025-01-01, got {value!r}")
    return value
