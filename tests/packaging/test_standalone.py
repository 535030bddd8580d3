"""The repository stands alone: a clone of its current commit into an empty folder refers to nothing outside
itself, and the tests that read sample data pass there.

What is committed is what is checked (a clone has nothing else), so commit before relying on this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from tests.support.processes import run_group

REPO = Path(__file__).resolve().parents[2]
# Folders of the machine the project was first written on; spelled in pieces so this file does not match them.
_SIBLING = "shared"
OUTSIDE_NAMES = re.compile(
    rf"(?:\.\./)+{_SIBLING}\b"                                    # a path up to the sibling folder
    rf"|\b{_SIBLING}/(?:samples|[\w.-]+\.md)\b"                   # its files, named from anywhere
    rf"|/work/{_SIBLING}\b")                                      # or by absolute path
UP_PATH = re.compile(r"(?<![\w.])(?:\.\./)+[\w.-][^\s)`'\"<>\]]*")  # a relative path that climbs
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
FILE_ANCHOR = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?((?:\.parent\b|\.parents\[\d+\])+)")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`git clone` of this repository at its current commit, alone in an empty folder."""
    empty = tmp_path_factory.mktemp("nothing-beside")
    target = empty / "vertex-batch-proxy"
    head = _git("rev-parse", "HEAD", cwd=REPO).strip()
    _git("clone", "--quiet", "--no-hardlinks", str(REPO), str(target), cwd=empty)
    _git("-c", "advice.detachedHead=false", "checkout", "--quiet", head, cwd=target)
    assert sorted(p.name for p in empty.iterdir()) == ["vertex-batch-proxy"]
    yield target


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _tracked(clone: Path) -> list[tuple[PurePosixPath, str | None]]:
    """Every tracked file: its path and its text (None for binary files and symbolic links)."""
    files = []
    for name in _git("ls-files", "-z", cwd=clone).split("\0"):
        if not name:
            continue
        path = clone / name
        text = None
        if not path.is_symlink():
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                pass
        files.append((PurePosixPath(name), text))
    return files


def _escapes(relative_to: PurePosixPath, target: str) -> bool:
    """True when `target`, read from the folder `relative_to` (both inside the repository), climbs out of it."""
    depth = len(relative_to.parts)
    for part in PurePosixPath(target.split("#", 1)[0]).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def test_no_tracked_file_names_a_folder_beside_the_repository(clone: Path) -> None:
    found = [f"{name}: {match.group(0)}" for name, text in _tracked(clone) if text is not None
             for match in OUTSIDE_NAMES.finditer(text)]
    assert found == []


def test_no_relative_path_in_a_tracked_file_climbs_out_of_the_repository(clone: Path) -> None:
    found = []
    for name, text in _tracked(clone):
        if text is None:
            continue
        targets = [m.group(0) for m in UP_PATH.finditer(text)]
        if name.suffix == ".md":
            targets += [t for t in MARKDOWN_LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|/|#", t)]
        found += [f"{name}: {target}" for target in targets if _escapes(name.parent, target)]
    assert found == []


def test_no_code_reaches_above_the_repository_from_its_own_file(clone: Path) -> None:
    """`Path(__file__).parents[k]` / `.parent` chains stop at the repository's root."""
    found = []
    for name, text in _tracked(clone):
        if text is None or name.suffix != ".py":
            continue
        for match in FILE_ANCHOR.finditer(text):
            steps = sum(1 if step == ".parent" else int(step[9:-1]) + 1
                        for step in re.findall(r"\.parent\b|\.parents\[\d+\]", match.group(1)))
            if steps > len(name.parts):  # the file's own folder is one step; the root is len(parts) steps up
                found.append(f"{name}: {match.group(0)}")
    assert found == []


def test_no_tracked_symbolic_link_points_outside(clone: Path) -> None:
    links = [line.split("\t", 1)[1] for line in _git("ls-files", "-s", cwd=clone).splitlines()
             if line.startswith("120000 ")]
    outside = [name for name in links if not (clone / name).resolve().is_relative_to(clone.resolve())]
    assert outside == []


@pytest.mark.slow
def test_the_tests_that_read_sample_data_pass_in_the_clone(clone: Path) -> None:
    """They once read a folder beside the repository; in the clone there is none."""
    for built in (REPO / "proxy" / "metering").glob("_rowscan*.so"):  # the compiled scanner is not tracked
        shutil.copy2(built, clone / "proxy" / "metering" / built.name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VBP_") and k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    where = subprocess.run([sys.executable, "-c", "import proxy, tests; print(proxy.__file__, tests.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.split() == [str(clone / "proxy" / "__init__.py"), str(clone / "tests" / "__init__.py")]
    done = run_group(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/providers/vertex/test_raw_http.py",
         "tests/metering/test_usage.py", "tests/metering/test_cost.py", "tests/metering/test_rowscan.py",
         "tests/tenancy/test_scopes.py::test_location_scope"],
        cwd=clone, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"^\d+ passed in ", done.stdout.splitlines()[-1]), done.stdout[-2000:]
