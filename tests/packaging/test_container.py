"""Docker cannot run here, so the Dockerfile's own steps are replayed in a clean venv: build the wheels, install
them with no index, lay out /app as the image does, start the CMD with the image's ENV, and run the HEALTHCHECK."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()

pytestmark = pytest.mark.slow


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
    for instruction, argument in _instructions(1):
        if instruction == "COPY" and "--from" not in argument:
            source, _target = argument.split()
            (shutil.copytree if (REPO / source).is_dir() else shutil.copy)(REPO / source, app / source)

    image_env = {k: v.replace("/app", str(app)).replace("/data", str(data)) for k, v in _env(1).items()}
    port = free_port()
    cmd = [a for i, a in _instructions(1) if i == "CMD"][0]
    argv = [str(tmp_path / "venv" / "bin" / x) if x == "vbp" else x for x in __import__("json").loads(cmd)]
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
            # Migrations ran on start from the copied folder, into the image's database path.
            assert (data / "vbp.db").exists()
            ready = subprocess.run([str(python), "-c", f"import urllib.request; print(urllib.request.urlopen("
                                    f"'http://127.0.0.1:{port}/readyz').read().decode())"],
                                   capture_output=True, text=True, check=True)
            assert '"status":"ok"' in ready.stdout.replace(" ", "")
        finally:
            server.terminate()
            server.wait(timeout=15)
