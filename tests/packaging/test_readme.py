"""The README is part of the product: its settings table, its CLI reference and its examples are checked here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from proxy.cli import cli
from proxy.settings import SETTINGS
from proxy.tenancy.keys import create_key
from tests.proxy.conftest import Proxied, start_proxied

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
GOOGLE_CONVENTIONS = {"GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"}


def _section(start: str, end: str) -> str:
    return README.split(start, 1)[1].split(end, 1)[0]


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    table = _section("<!-- settings:start -->", "<!-- settings:end -->")
    documented = re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.M)
    assert len(documented) == len(set(documented)), "a setting is documented twice"
    assert set(documented) == {s.env for s in SETTINGS} | GOOGLE_CONVENTIONS


def _commands(group: click.Group, prefix: str = "vbp") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


def test_the_cli_reference_names_every_command_and_option() -> None:
    reference = _section("## CLI reference", "## Settings")
    for path, command in _commands(cli):
        assert f"`{path}" in reference, f"{path} is not in the README's CLI reference"
        row = next(line for line in reference.splitlines() if f"`{path}" in line)
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert any(opt in row for opt in param.opts if opt.startswith("--")), f"{path} {param.opts}"
        assert command.help, f"{path} has no help text"


def _examples() -> list[tuple[str, str]]:
    return re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)```", README, flags=re.S)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxied, dict[str, str]]]:
    """What `make demo` starts: the emulator and the proxy on SQLite, a team key, the example input uploaded."""
    saved = dict(os.environ)
    # jobs take a few seconds, as with `make demo`, so the examples' cancel meets a running job
    stack, proxy, sessions = start_proxied(tmp_path_factory.mktemp("readme"), job_seconds=6)
    env = Proxied(stack, proxy, sessions)
    with sessions.begin() as session:
        key = create_key(session, team="team-a")[1]
    env.bucket("my-bucket").blob("input.jsonl").upload_from_filename(str(REPO / "examples" / "input.jsonl"))
    yield env, {**os.environ, "VBP_URL": proxy.url, "VBP_KEY": key}
    proxy.stop()
    stack.stop()
    os.environ.clear()
    os.environ.update(saved)


def test_the_readme_has_curl_and_sdk_examples() -> None:
    kinds = [kind for kind, _ in _examples()]
    assert kinds.count("curl") >= 1 and kinds.count("python") >= 2


@pytest.mark.parametrize("index", range(len(_examples())))
def test_readme_example_runs_as_written(servers: tuple[Proxied, dict[str, str]], index: int) -> None:
    env, environ = servers
    kind, code = _examples()[index]
    before = len(env.emulator_calls())
    shell = kind in ("curl", "emulator")
    command = ["bash", "-euo", "pipefail", "-c", code] if shell else [sys.executable, "-c", code]
    done = subprocess.run(command, env=environ, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()
    if kind == "emulator":  # straight to the emulator, with a token from its /token
        assert any(c["api"] == "token" for c in env.stack.request_log)
    else:
        assert "projects/" in done.stdout  # every proxy example prints at least one job name
    assert len(env.emulator_calls()) > before  # and really reached (the stand-in for) Vertex
