"""`make demo` as a newcomer sees it: the bootstrap says what it does, and the demo runs to a cost report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.emulator.command import parse_export_line
from tests.support.processes import run_group

REPO = Path(__file__).resolve().parents[2]


def test_the_venv_bootstrap_says_what_it_is_doing_first() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "--no-print-directory", "--dry-run", "--always-make", ".venv/.installed-stamp"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        'echo "==> Creating .venv and installing the proxy with its dependencies and test tools '
        '(a few minutes the first time)"',
        "python3 -m venv .venv",
    ]


@pytest.mark.slow
def test_the_demo_runs_to_a_cost_report() -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VBP_") and k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")}
    done = run_group([sys.executable, "-m", "proxy.emulator.demo"], cwd=REPO, env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert ("==> Starting the local Google stand-ins, with the example input in their Cloud Storage: "
            "vbp emulator --upload examples/input.jsonl gs://my-bucket/demo-team/input.jsonl") in out
    exports = [parse_export_line(line.strip()) for line in out.splitlines() if line.startswith("    export ")]
    assert [key for key, _ in filter(None, exports)] == [
        "VBP_VERTEX_BASE_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "VBP_FILES_BUCKET",
        "VBP_MODELS_FILE", "VBP_EMULATOR_OPENAI_KEY", "VBP_EMULATOR_AZURE_KEY"]
    assert "(the README's curl call, paths under gs://my-bucket/demo-team/)" in out
    assert re.search(r"JOB_STATE_SUCCEEDED  \{'successfulCount': '2'\}", out)
    assert "==> Running an OpenAI-format batch through the OpenAI door with the openai SDK" in out
    assert re.search(r"  completed  2 of 2 requests done, 0 failed", out), out
    assert '    request-1: {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19' in out
    # the batch is named by its id in the report by job, at the same cost as the native job of the same two lines
    assert re.search(r"^batch_[0-9a-f]{24}\s+1\s+0\.0000049\s", out, flags=re.M), out
    # two jobs, each two lines of gemini-2.5-flash-lite: 18 prompt and 20 output tokens at 0.05 / 0.20 per 1M
    assert re.search(r"^demo-team\s+gemini-2\.5-flash-lite\s+2\s+0\.0000098\s+36\s", out, flags=re.M), out
    # a batch on each provider: gpt-4.1-mini on OpenAI, gpt-4o-mini on Azure (tokens counted; no price table yet)
    assert "==> Running an OpenAI-format batch of gpt-4.1-mini (on the OpenAI stand-in)" in out
    assert "==> Running an OpenAI-format batch of gpt-4o-mini (on an Azure stand-in)" in out
    assert len(re.findall(r"  completed  2 of 2 requests done, 0 failed", out)) == 3, out
    assert re.search(r"^gpt-4\.1-mini\s+openai-gpt-4\.1-mini\s+openai\s+1\s+\S+\s+18\s+20$", out, flags=re.M), out
    assert re.search(r"^gpt-4o-mini\s+azure-eastus-gpt-4o-mini\s+azure\s+1\s+\S+\s+18\s+20$", out, flags=re.M), out
    assert out.rstrip().endswith("==> Done: the emulator and the proxy are stopped. Next: README.md, Quickstart.")
