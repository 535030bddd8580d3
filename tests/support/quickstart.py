"""The README's Quickstart as a newcomer runs it: terminal 1's block in one shell, the three `export` lines it
prints pasted at the top of terminal 2, then every terminal-2 block in order, in a fresh folder.

The README marks its blocks with `<!-- quickstart: terminal 1 -->`, `<!-- quickstart: terminal 2 -->` and
`<!-- quickstart: file PATH -->` (a block that shows a file of the repository). Under a command, lines starting
with `#   ` show what it prints: `expected_outputs` turns them into patterns where `...` stands for any text and a
19-digit number for any Vertex resource id.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxy.emulator.command import parse_export_line
from proxy.emulator.storage import free_port
from tests.support.processes import end_group, finish, start_group

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# What the test process may carry from other tests; a newcomer's shell has none of it.
_FOREIGN_ENV = ("VBP_", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")
_EXPECTED_LINE = "#   "


@dataclass(frozen=True)
class Block:
    """One marked code block of the Quickstart: where it runs (`terminal 1`, `terminal 2`, `file PATH`)."""

    where: str
    language: str
    code: str


def quickstart_text(readme: str | None = None) -> str:
    text = README.read_text() if readme is None else readme
    return text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]


def blocks(text: str) -> list[Block]:
    """The marked blocks of a Quickstart section, in order."""
    found = re.findall(r"<!-- quickstart: ([^>]+?) -->\n```(\w+)\n(.*?)```", text, flags=re.S)
    return [Block(where, language, code) for where, language, code in found]


def expected_outputs(code: str) -> list[str]:
    """The printed-output comment runs of a shell block, one per command that shows its output."""
    runs: list[list[str]] = []
    previous_was_output = False
    for line in code.splitlines():
        is_output = line.startswith(_EXPECTED_LINE)
        if is_output:
            if not previous_was_output:
                runs.append([])
            runs[-1].append(line[len(_EXPECTED_LINE):])
        previous_was_output = is_output
    return ["\n".join(run) for run in runs]


def output_pattern(expected: str) -> re.Pattern[str]:
    """`...` matches any text (across lines too); a 19-digit resource id any other; the rest is literal."""
    parts = []
    for piece in re.split(r"(\.\.\.|\b\d{19}\b)", expected):
        if piece == "...":
            parts.append(".*?")
        elif re.fullmatch(r"\d{19}", piece):
            parts.append(r"\d{19}")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), flags=re.S)


def find_in_order(expected: list[str], output: str) -> list[str]:
    """The expected outputs that do not appear in `output` in their order (empty: every one does)."""
    missing, position = [], 0
    for text in expected:
        match = output_pattern(text).search(output, position)
        if match is None:
            missing.append(text)
        else:
            position = match.end()
    return missing


def with_free_ports(text: str) -> str:
    """The Quickstart with its two fixed ports (8790, 4000) moved to free ones, so that test runs on a shared
    machine never collide; nothing else is changed."""
    for fixed in ("8790", "4000"):
        text = re.sub(rf"(?<=--port ){fixed}\b|(?<=127\.0\.0\.1:){fixed}\b", str(free_port()), text)
    return text


@dataclass
class Terminals:
    """The two shells of a Quickstart run and what they printed."""

    folder: Path
    terminal_1: subprocess.Popen[str] | None = None
    terminal_2: subprocess.Popen[str] | None = None
    printed_1: list[str] = field(default_factory=list)
    _lines_1: queue.Queue[str] = field(default_factory=queue.Queue)
    _pump_1: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV)}

    def start_terminal_1(self, code: str) -> None:
        with open(self.folder / "terminal-1.log", "w") as log:
            self.terminal_1 = start_group(["bash", "-euo", "pipefail", "-c", code], cwd=self.folder,
                                          env=self.environment(), stderr=log)
        stdout = self.terminal_1.stdout
        assert stdout is not None

        def pump() -> None:
            for line in iter(stdout.readline, ""):
                self._lines_1.put(line)

        self._pump_1 = threading.Thread(target=pump, daemon=True)
        self._pump_1.start()

    def export_lines_of_terminal_1(self, count: int = 3, timeout: float = 60.0) -> list[str]:
        """Terminal 1's first `count` lines of `export KEY=value`, as printed (what a newcomer pastes)."""
        deadline = time.monotonic() + timeout
        while sum(parse_export_line(line) is not None for line in self.printed_1) < count:
            try:
                self.printed_1.append(self._lines_1.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                log = (self.folder / "terminal-1.log").read_text()
                raise AssertionError(f"terminal 1 printed only {self.printed_1}; its log:\n{log}") from None
        return [line for line in self.printed_1 if parse_export_line(line) is not None]

    def run_terminal_2(self, script: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run terminal 2's script to its end; what it started in the background keeps running until `stop`."""
        self.terminal_2 = start_group(["bash", "-euo", "pipefail", "-c", script], cwd=self.folder,
                                      env=self.environment())
        return finish(self.terminal_2, timeout)

    def stop(self) -> None:
        """End both shells and everything they started (each shell leads its own process group)."""
        if self.terminal_2 is not None:
            end_group(self.terminal_2)
        if self.terminal_1 is not None:
            end_group(self.terminal_1, close_streams=False)
            if self._pump_1 is not None:
                self._pump_1.join(timeout=10)  # it reads to the end of the pipe, which the group's end closes
            assert self.terminal_1.stdout is not None
            self.terminal_1.stdout.close()


def fresh_folder(folder: Path) -> Path:
    """A newcomer's working folder: the repository's `examples/` and `.venv`, and nothing of earlier runs."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "examples", folder / "examples")
    (folder / ".venv").symlink_to(REPO / ".venv")
    return folder
