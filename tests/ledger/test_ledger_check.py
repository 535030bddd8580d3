"""Which ledger a `vbp` command uses: named on stderr, never created by accident (only `serve` and `db upgrade` may),
and refused with a message naming the URL when it is missing, unreachable or not migrated."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from proxy.cli import cli
from proxy.ledger.engine import alembic_config, head_revision, upgrade
from tests.support.postgres import LocalPostgres

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

# Commands that create the ledger, and those that use none (`vbp estimate` prices a local file only).
CREATORS = {"vbp serve", "vbp db upgrade"}
# `vbp models` reads the ledger only when VBP_MODELS_FILE is set (tests/catalog/test_models_command.py checks it then)
NO_LEDGER = {"vbp emulator", "vbp estimate", "vbp models"}


def _commands(group: click.Group, prefix: str = "vbp") -> Iterator[tuple[str, click.Command]]:
    for name, sub in sorted(group.commands.items()):
        if isinstance(sub, click.Group):
            if sub.invoke_without_command:  # a command of its own too (`vbp report`, beside `vbp report lines`)
                yield f"{prefix} {name}", sub
            yield from _commands(sub, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", sub


def _argv(path: str, command: click.Command) -> list[str]:
    """The command with a plain value for each required option and argument (`x`)."""
    argv = path.split()[1:]
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            argv.append("x")
        elif isinstance(param, click.Option) and param.required:
            argv += [param.opts[0], "x"]
    return argv


LEDGER_COMMANDS = [(path, _argv(path, cmd)) for path, cmd in _commands(cli) if path not in CREATORS | NO_LEDGER]


def vbp(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VBP_")}
    return subprocess.run([sys.executable, "-m", "proxy", *argv], cwd=cwd, env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def test_every_ledger_command_is_covered() -> None:
    names = {path for path, _ in LEDGER_COMMANDS}
    assert {"vbp keys create", "vbp keys list", "vbp report", "vbp meter", "vbp reprice", "vbp reconcile"} <= names


@pytest.mark.parametrize(("path", "argv"), LEDGER_COMMANDS, ids=[path for path, _ in LEDGER_COMMANDS])
def test_no_command_but_serve_and_db_upgrade_creates_a_ledger(tmp_path: Path, path: str, argv: list[str]) -> None:
    done = vbp(argv, cwd=tmp_path)  # the default sqlite:///vbp.db, in a folder that holds no ledger
    shown = f"sqlite:///{tmp_path / 'vbp.db'}"
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"ledger: {shown}",
        f"Error: no ledger at {shown}: the file does not exist. Set VBP_DATABASE_URL to the ledger `vbp serve` "
        "uses (or run `vbp db upgrade` to create a new one)."]
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_db_upgrade_creates_it_and_then_every_command_names_it(tmp_path: Path) -> None:
    shown = f"sqlite:///{tmp_path / 'vbp.db'}"
    created = vbp(["db", "upgrade"], cwd=tmp_path)
    assert created.returncode == 0 and created.stderr == f"ledger: {shown} (new: creating it)\n"
    made = vbp(["keys", "create", "--team", "team-a", "--json"], cwd=tmp_path)
    assert made.returncode == 0 and made.stderr == f"ledger: {shown}\n"
    listed = vbp(["keys", "list"], cwd=tmp_path / "..", env={"VBP_DATABASE_URL": f"sqlite:///{tmp_path.name}/vbp.db"})
    assert listed.returncode == 0 and listed.stderr == f"ledger: {shown}\n"  # a relative path, shown absolute
    assert "team-a" in listed.stdout
    again = vbp(["db", "upgrade"], cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == f"ledger: {shown}\n"


def test_a_ledger_behind_the_code_names_vbp_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0003")
    done = vbp(["report"], cwd=tmp_path, env={"VBP_DATABASE_URL": url})
    assert done.returncode == 1
    assert done.stderr.splitlines()[1] == (f"Error: the ledger at {url} is at migration 0003, this vbp needs "
                                          f"{head_revision()}: run `vbp db upgrade`.")
    empty = tmp_path / "empty.db"
    empty.touch()
    done = vbp(["keys", "list"], cwd=tmp_path, env={"VBP_DATABASE_URL": f"sqlite:///{empty}"})
    assert done.returncode == 1 and done.stderr.splitlines()[1] == (
        f"Error: the ledger at sqlite:///{empty} has no schema: run `vbp db upgrade` (or start `vbp serve`) first.")
    assert empty.stat().st_size == 0  # looked at, not changed


@pytest.mark.postgres
def test_postgresql_a_missing_database_or_schema_is_named_with_the_password_masked(
        postgres_server: LocalPostgres, tmp_path: Path) -> None:
    url = make_url(postgres_server.create_database(f"check_{os.getpid()}")).set(password="s3cret-pw")
    missing = url.set(database=f"missing_{os.getpid()}")
    done = vbp(["report"], cwd=tmp_path, env={"VBP_DATABASE_URL": missing.render_as_string(hide_password=False)})
    shown = missing.render_as_string(hide_password=True)
    assert done.returncode == 1 and "s3cret-pw" not in done.stdout + done.stderr
    assert done.stderr.splitlines()[0] == f"ledger: {shown}"
    assert done.stderr.splitlines()[1].startswith(f"Error: cannot open the ledger at {shown} (VBP_DATABASE_URL): ")
    assert f'database "{missing.database}" does not exist' in done.stderr
    plain = url.render_as_string(hide_password=False)
    done = vbp(["keys", "list"], cwd=tmp_path, env={"VBP_DATABASE_URL": plain})
    assert done.returncode == 1 and done.stderr.splitlines()[1] == (
        f"Error: the ledger at {url.render_as_string(hide_password=True)} has no schema: run `vbp db upgrade` "
        "(or start `vbp serve`) first.")
    upgrade(plain)
    done = vbp(["keys", "list"], cwd=tmp_path, env={"VBP_DATABASE_URL": plain})
    assert done.returncode == 0 and done.stderr == f"ledger: {url.render_as_string(hide_password=True)}\n"
