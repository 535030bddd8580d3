"""Reading `VBP_MODELS_FILE`: TOML `[[deployment]]` tables, each field checked, every error naming its line.

`vbp serve` loads the catalog before it starts, so a malformed file stops it with `CatalogError`'s message, e.g.
`models.toml:14: deployment "azure-eastus": field "provider": must be one of vertex, openai, azure, not "azur"`.
tomllib keeps no positions, so lines are found again in the text: the n-th `[[deployment]]` header, and a field's
`name =` line below it (a table TOML could only spell otherwise, inline, is named by its header's line).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.catalog.catalog import Catalog
from proxy.catalog.deployment import AUTH_ENTRA, AUTH_KEY, OPENAI_BASE_URL, PROVIDERS, Deployment
from proxy.providers.vertex.resources import valid_location, valid_project

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
AZURE_DEPLOYMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
API_VERSION_RE = re.compile(r"(\d{4}-\d{2}-\d{2}(-preview)?|v1|latest|preview)")
HEADER_RE = re.compile(r"^\s*\[\[\s*deployment\s*\]\]\s*(#.*)?$")

COMMON = ("name", "provider", "model", "weight", "enqueued_token_quota")
FIELDS = {
    "vertex": (*COMMON, "project", "location"),
    "openai": (*COMMON, "base_url", "api_key_env"),
    "azure": (*COMMON, "base_url", "api_key_env", "deployment", "api_version", "auth"),
}
REQUIRED = {
    "vertex": ("project", "location"),
    "openai": ("api_key_env",),
    "azure": ("base_url", "deployment", "api_version"),
}


class CatalogError(ValueError):
    """The catalog cannot be used; the message names the file, the line and the field."""


def load_catalog(path: str | Path) -> Catalog:
    """The catalog in `path`; CatalogError naming the line and the field of the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the model catalog (VBP_MODELS_FILE): {exc}") from None
    return parse_catalog(text, source=str(path))


def parse_catalog(text: str, *, source: str = "models.toml") -> Catalog:
    """The catalog in `text` (`source` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: not valid TOML: {exc}") from None
    lines = _Lines(text, source)
    for key in data:
        if key != "deployment":
            raise CatalogError(f"{source}:{lines.top_level(key)}: unknown table or key {key!r}: the catalog holds "
                               "only [[deployment]] tables")
    tables = data.get("deployment", [])
    if not isinstance(tables, list):
        raise CatalogError(f"{source}: `deployment` must be an array of tables ([[deployment]])")
    deployments: list[Deployment] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        deployment = _deployment(table, index, lines)
        if deployment.name in seen:
            raise CatalogError(f"{lines.at(index, 'name')}: deployment {deployment.name!r}: field \"name\": "
                               f"already used by the deployment at line {seen[deployment.name]}")
        seen[deployment.name] = lines.header(index)
        deployments.append(deployment)
    return Catalog.of(deployments, source)


def _deployment(table: Mapping[str, Any], index: int, lines: _Lines) -> Deployment:
    label = f"deployment {table.get('name')!r}" if isinstance(table.get("name"), str) else f"deployment #{index + 1}"

    def fail(field: str, problem: str) -> CatalogError:
        return CatalogError(f"{lines.at(index, field)}: {label}: field \"{field}\": {problem}")

    for field in ("name", "provider", "model"):
        if field not in table:
            raise CatalogError(f"{lines.at(index, None)}: {label}: field \"{field}\" is required")
    provider = table["provider"]
    if provider not in PROVIDERS:
        raise fail("provider", f"must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    for field in table:
        if field not in FIELDS[provider]:
            raise fail(field, f"unknown for a {provider} deployment (known: {', '.join(FIELDS[provider])})")
    for field in REQUIRED[provider]:
        if field not in table:
            raise CatalogError(f"{lines.at(index, None)}: {label}: field \"{field}\" is required for a "
                               f"{provider} deployment")
    values: dict[str, Any] = {"provider": provider}
    for field, value in table.items():
        if field == "provider":
            continue
        check = _CHECKS[field]
        try:
            values[field] = check(value)
        except ValueError as exc:
            raise fail(field, str(exc)) from None
    if provider == "openai":
        values.setdefault("base_url", OPENAI_BASE_URL)
    if provider == "azure":
        auth = values.setdefault("auth", AUTH_KEY)
        if auth == AUTH_KEY and "api_key_env" not in values:
            raise CatalogError(f"{lines.at(index, None)}: {label}: field \"api_key_env\" is required for an azure "
                               "deployment with auth = \"key\" (or set auth = \"entra\")")
        if auth == AUTH_ENTRA and "api_key_env" in values:
            raise fail("api_key_env", "not used with auth = \"entra\" (tokens come from azure-identity)")
    return Deployment(**values)


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or regex.fullmatch(value) is None:
            raise ValueError(f"{value!r} is not {what}")
        return value
    return check


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number of at least 1, not {value!r}")
    return value


def _project(value: Any) -> str:
    if not isinstance(value, str) or not valid_project(value):
        raise ValueError(f"{value!r} is not a Google Cloud project id or number")
    return value


def _location(value: Any) -> str:
    if not isinstance(value, str) or not valid_location(value):
        raise ValueError(f"{value!r} is not a Vertex location (e.g. us-central1)")
    return value


def _base_url(value: Any) -> str:
    """An https URL with a host and nothing after the path (plain http only to a loopback host: keys travel in it)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a URL, not {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an https URL with a host and no query, fragment or credentials")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{value!r}: plain http is allowed only to a loopback host (keys are sent to it)")
    return value.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth(value: Any) -> str:
    if value not in (AUTH_KEY, AUTH_ENTRA):
        raise ValueError(f"must be \"{AUTH_KEY}\" or \"{AUTH_ENTRA}\", not {value!r}")
    return str(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _pattern(NAME_RE, "a deployment name (lowercase letters, digits, '.', '_', '-'; at most 63)"),
    "model": _pattern(MODEL_RE, "a model name"),
    "weight": _positive,
    "enqueued_token_quota": _positive,
    "project": _project,
    "location": _location,
    "base_url": _base_url,
    "api_key_env": _pattern(ENV_RE, "an environment variable's name"),
    "deployment": _pattern(AZURE_DEPLOYMENT_RE, "an Azure deployment name"),
    "api_version": _pattern(API_VERSION_RE, "an Azure OpenAI api-version (e.g. 2024-10-21)"),
    "auth": _auth,
}


class _Lines:
    """Line numbers of the catalog's text: the `[[deployment]]` headers and the fields below each."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.text_lines = text.splitlines()
        self.headers = [number for number, line in enumerate(self.text_lines, 1) if HEADER_RE.match(line)]

    def header(self, index: int) -> int:
        return self.headers[index] if index < len(self.headers) else 1

    def at(self, index: int, field: str | None) -> str:
        """`source:line` of `field` in the index-th table (its header's line when not found, or field None)."""
        start = self.header(index)
        if field is not None:
            end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.text_lines) + 1
            pattern = re.compile(rf"^\s*[\"']?{re.escape(field)}[\"']?\s*=")
            for number in range(start + 1, end):
                if pattern.match(self.text_lines[number - 1]):
                    return f"{self.source}:{number}"
        return f"{self.source}:{start}"

    def top_level(self, key: str) -> int:
        pattern = re.compile(rf"^\s*(\[+\s*)?[\"']?{re.escape(key)}[\"']?\s*(=|\]|\.)")
        for number, line in enumerate(self.text_lines, 1):
            if pattern.match(line):
                return number
        return 1
