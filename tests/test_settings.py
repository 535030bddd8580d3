"""One source of settings: every default is stated once, in `SETTINGS`, and only `proxy.settings` reads the
environment (the emulator, a stand-in for Google, reads what Google's tools would)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from proxy.settings import SETTINGS, Settings, shipped

PACKAGE = Path(__file__).resolve().parents[1] / "proxy"
ALLOWED = {PACKAGE / "settings.py"}


def _environment_reads(tree: ast.AST) -> list[int]:
    """Line numbers of `os.environ`, `os.getenv`, `environ`/`getenv` imported from os, anywhere in a module."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb", "getenvb"} \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(alias.name in {"environ", "getenv", "environb", "getenvb"} for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_no_module_but_settings_reads_the_environment() -> None:
    readers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED or (PACKAGE / "emulator") in path.parents:
            continue
        lines = _environment_reads(ast.parse(path.read_text(), str(path)))
        if lines:
            readers[str(path.relative_to(PACKAGE.parent))] = lines
    assert readers == {}, "read the environment through proxy.settings.Settings instead"


def test_the_scan_sees_each_way_of_reading_the_environment() -> None:
    source = "import os\nfrom os import getenv\na = os.environ['X']\nb = os.getenv('Y')\nc = os.environ.get('Z')\n"
    assert _environment_reads(ast.parse(source)) == [2, 3, 4, 5]


def test_the_dataclass_defaults_are_the_tables_defaults_parsed() -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert sorted(fields) == sorted(s.attr for s in SETTINGS)
    defaults = Settings()
    for setting in SETTINGS:
        expected = None if setting.default is None else setting.parse(setting.default)
        assert getattr(defaults, setting.attr) == expected, setting.env
    assert Settings.from_env({}) == defaults
    assert defaults.database_url == "sqlite:///vbp.db" and defaults.retry_attempts == 4
    assert defaults.project_aliases is not Settings().project_aliases  # a fresh dict for each instance


def test_the_pricing_and_migrations_folders_come_from_the_settings(tmp_path: Path) -> None:
    assert Settings.from_env({}).pricing_path == shipped("pricing") == PACKAGE.parent / "pricing"
    assert Settings.from_env({}).migrations_path == shipped("migrations") == PACKAGE.parent / "migrations"
    chosen = Settings.from_env({"VBP_PRICING_DIR": str(tmp_path / "p"), "VBP_MIGRATIONS_DIR": str(tmp_path / "m")})
    assert (chosen.pricing_path, chosen.migrations_path) == (tmp_path / "p", tmp_path / "m")


def test_classes_whose_defaults_are_settings_take_them_from_the_table() -> None:
    from proxy.metering.job_meter import DEFAULT_LEASE_SECONDS
    from proxy.metering.ranges import DEFAULT_MIN_RANGE_BYTES
    from proxy.upstream.retry import RetryPolicy

    defaults = Settings()
    assert (RetryPolicy().attempts, RetryPolicy().max_seconds) == (defaults.retry_attempts, defaults.retry_max_seconds)
    assert (DEFAULT_LEASE_SECONDS, DEFAULT_MIN_RANGE_BYTES) == (120.0, 32 * 1024 * 1024)
    assert (defaults.metering_lease_seconds, defaults.meter_range_mb) == (120.0, 32)
