"""The README is part of the product: its settings table, its CLI reference, its metrics and its Quickstart (run
exactly as written) are checked here."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from proxy.cli import cli
from proxy.emulator.jobs import project_number
from proxy.settings import SETTINGS
from tests.providers.vertex.conftest import running
from tests.support import quickstart

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
            if command.invoke_without_command:  # a command of its own too (`vbp report`, beside `vbp report lines`)
                yield path, command
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


def _quickstart_blocks(where: str) -> list[quickstart.Block]:
    return [block for block in quickstart.blocks(quickstart.quickstart_text()) if block.where == where]


def test_the_quickstart_shows_each_example_file_as_it_is() -> None:
    shown = {block.where.removeprefix("file "): block.code for block in quickstart.blocks(quickstart.quickstart_text())
             if block.where.startswith("file ")}
    assert sorted(shown) == ["examples/aiplatform_batch.py", "examples/genai_batch.py"]
    for path, code in shown.items():
        assert code == (REPO / path).read_text(), f"the README shows another {path} than the repository's"
    terminal_2 = "".join(block.code for block in _quickstart_blocks("terminal 2"))
    for path in shown:  # and terminal 2 runs each of them with the project's interpreter
        assert f"\n.venv/bin/python {path}\n" in terminal_2


@pytest.mark.slow
def test_the_quickstart_runs_as_written_to_metered_jobs(tmp_path: Path) -> None:
    """Terminal 1's block, its three `export` lines pasted into terminal 2, then terminal 2's blocks, in a fresh
    folder holding only `examples/` and `.venv`: every job the examples create ends up metered, and every command
    prints what the README says it prints."""
    text = quickstart.with_free_ports(quickstart.quickstart_text())
    found = quickstart.blocks(text)
    terminal_1 = [b for b in found if b.where == "terminal 1"]
    terminal_2 = [b for b in found if b.where == "terminal 2"]
    assert len(terminal_1) == 1 and len(terminal_2) >= 5 and all(b.language == "sh" for b in terminal_1 + terminal_2)
    folder = quickstart.fresh_folder(tmp_path / "newcomer")
    terminals = quickstart.Terminals(folder)
    try:
        terminals.start_terminal_1(terminal_1[0].code)
        pasted = terminals.export_lines_of_terminal_1()
        assert quickstart.find_in_order(quickstart.expected_outputs(terminal_1[0].code), "".join(pasted)) == []
        script = "".join(pasted) + "".join(block.code for block in terminal_2)
        done = terminals.run_terminal_2(script)
        assert done.returncode == 0, done.stdout + done.stderr
        expected = [out for block in terminal_2 for out in quickstart.expected_outputs(block.code)]
        assert len(expected) >= 12
        assert quickstart.find_in_order(expected, done.stdout) == [], done.stdout + done.stderr
        with sqlite3.connect(folder / "vbp.db") as ledger:
            jobs = ledger.execute("SELECT display_name, model_id, state, metering_state, lines_succeeded "
                                  "FROM jobs ORDER BY id").fetchall()
    finally:
        terminals.stop()
    assert [job[:4] for job in jobs] == [
        ("my-batch-job", "gemini-2.5-flash-lite", "JOB_STATE_SUCCEEDED", "metered"),  # curl: then deleted
        ("my-batch-job", "gemini-2.5-flash-lite", "JOB_STATE_CANCELLED", "metered"),  # curl: cancelled
        (jobs[2][0], "gemini-2.5-flash", "JOB_STATE_SUCCEEDED", "metered"),  # google-genai names its own
        ("aiplatform-example", "gemini-2.5-flash-lite", "JOB_STATE_SUCCEEDED", "metered"),
    ]
    assert [job[4] for job in jobs] == [2, 0, 2, 2]


def _shell_commands(code: str) -> list[str]:
    """The commands of a shell block, continuation lines joined, comments and expected output left out."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_curl_call_fails_loudly_and_shows_what_it_prints() -> None:
    shell_blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    calls = [command for code in shell_blocks for command in _shell_commands(code) if "curl " in command]
    assert len(calls) >= 10  # the readiness wait, the curl section, the emulator, the costs
    for command in calls:  # -f alone prints nothing on an error; without -f an error looks like a success
        assert "--fail-with-body" in command, command
    for block in _quickstart_blocks("terminal 2"):
        lines = block.code.splitlines()
        for index, line in enumerate(lines):
            shown = line.startswith("curl ") or line.startswith("echo ") or line.startswith("ended ")
            if shown or line.startswith(".venv/bin/python examples/"):
                rest = [later for later in lines[index + 1:] if not later.startswith("     ")]  # continuations
                assert rest and rest[0].startswith("#   "), f"no expected output under: {line}"


@pytest.mark.slow
def test_a_bad_key_in_the_curl_example_shows_the_proxys_401(tmp_path: Path) -> None:
    """The curl block as written, with a key the proxy does not know: Google's envelope, not a traceback."""
    block = next(b for b in _quickstart_blocks("terminal 2") if "examples/create-job.json" in b.code)
    with running(tmp_path) as env:
        environ = {**env_without_vbp(), "VBP_URL": env.proxy.url, "VBP_KEY": "vbp_not-a-real-key"}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=REPO, env=environ,
                              capture_output=True, text=True, timeout=60)
        calls = env.emulator_calls()
    assert done.returncode == 1, done.stdout + done.stderr  # the create stops the script (set -e)
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr
    message = ('{"error": {"code": 401, "message": "The API key is not valid: unknown, revoked or expired.", '
               '"status": "UNAUTHENTICATED"}}')
    assert done.stderr.splitlines() == ["curl: (22) The requested URL returned error: 401", message]
    assert calls == []  # refused before Vertex


def env_without_vbp() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VBP_")}


def test_the_quickstart_says_when_reports_fill_and_how_to_meter_now() -> None:
    text = quickstart.quickstart_text()
    money = text.split("### Where the money went", 1)[1]
    poll = next(s for s in SETTINGS if s.env == "VBP_POLL_INTERVAL")
    assert f"`VBP_POLL_INTERVAL` seconds ({poll.default} by default" in " ".join(money.split())
    assert "`vbp meter --job NAME`" in money and "`vbp meter`" in money
    commands = _shell_commands("".join(b.code for b in _quickstart_blocks("terminal 2")))
    meter = commands.index(".venv/bin/vbp meter")
    assert meter < next(i for i, c in enumerate(commands) if c.startswith(".venv/bin/vbp report"))


def test_the_quickstart_explains_aliases_and_project_numbers() -> None:
    paragraph = " ".join(quickstart.quickstart_text().split("**Aliases.**", 1)[1].split("\n\n", 1)[0].split())
    for words in ("`your-project`", "`VBP_PROJECT_ALIASES=your-project=my-real-project`", "On the emulator",
                  "on real Vertex", "project **number**"):
        assert words in paragraph, words
    # the number the paragraph shows is the one the emulator gives my-real-project
    assert f"`projects/{project_number('my-real-project')}/locations/...`" in paragraph


def test_the_prerequisites_name_what_ci_installs() -> None:
    top = _section("## Two commands", "## Quickstart").lower()
    ci = (REPO / ".ci" / "run").read_text()
    packages = [p for group in re.findall(r"need\+=\(([^)]*)\)", ci) for p in group.split()]
    assert packages == ["postgresql", "chromium", "fonts-dejavu-core"]
    for package in packages[:2]:  # the fonts come with chromium
        assert package in top, f"the README's prerequisites do not name {package}"
    assert "dashboard" in top.split("chromium", 1)[1][:80]


@pytest.mark.slow
def test_the_metrics_table_lists_what_metrics_serves(tmp_path: Path) -> None:
    table = _section("<!-- metrics:start -->", "<!-- metrics:end -->")
    documented = dict(re.findall(r"^\| `(vbp_\w+)` \| (\w+) \|", table, flags=re.M))
    with running(tmp_path) as env, env.client() as client:
        reply = client.get("/metrics")
    assert reply.status_code == 200
    served = dict(re.findall(r"^# TYPE (\w+) (\w+)$", reply.text, flags=re.M))
    # prometheus_client's own `_created` series of unlabelled histograms are not ours to document
    served = {name: kind for name, kind in served.items()
              if not (name.endswith("_created") and name.removesuffix("_created") in served)}
    assert documented == served
    assert len(documented) == 20
