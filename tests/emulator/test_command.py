"""`vbp emulator` as a process: it prints its environment, serves a README-style curl call, stops on SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import google.auth.transport.requests
import httpx
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from proxy.emulator.command import parse_export_line

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

# tests/data/create-job.json and tests/data/vertex-batch-input.jsonl (the public passthrough and LiteLLM examples).
CREATE_JOB = """{
  "displayName": "my-batch-job",
  "model": "projects/your-project/locations/us-central1/publishers/google/models/gemini-1.5-flash",
  "inputConfig": {"gcsSource": {"uris": ["gs://my-bucket/input.jsonl"]}, "instancesFormat": "jsonl"},
  "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://my-bucket/output/"}, "predictionsFormat": "jsonl"}
}"""
INPUT = "".join(json.dumps({"request": {
    "contents": [{"role": "user", "parts": [{"text": "Hello world!"}]}],
    "systemInstruction": {"parts": [{"text": f"You are {kind} assistant."}]},
    "generationConfig": {"maxOutputTokens": 10}}}) + "\n" for kind in ("a helpful", "an unhelpful"))


def _read_lines(process: subprocess.Popen[str], reader: list[threading.Thread], count: int = 7,
                timeout: float = 30.0) -> list[str]:
    """The first lines the command prints, as printed (read in a thread: a pipe read must not hang the test)."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in iter(stdout.readline, ""):
            lines.put(line)

    reader.append(threading.Thread(target=pump, daemon=True))
    reader[0].start()
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    while len(printed) < count:
        try:
            printed.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"vbp emulator printed no environment in time (exit code {process.poll()})") from None
    return printed


def _read_env(process: subprocess.Popen[str], reader: list[threading.Thread]) -> dict[str, str]:
    """The `export KEY=value` lines the command prints first, read as a shell reads them."""
    env: dict[str, str] = {}
    for line in _read_lines(process, reader):
        parsed = parse_export_line(line)
        assert parsed is not None, f"not an export line: {line!r}"
        env[parsed[0]] = parsed[1]
    return env


def test_vbp_emulator_serves_a_curl_call_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.emulator.command", "--port", "0", "--job-seconds", "0.5",
         "--extra-model", "gemini-1.5-flash", "--openai-key", "sk-fixed-for-this-run"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )
    reader: list[threading.Thread] = []
    try:
        env = _read_env(process, reader)
        assert set(env) == {"VBP_VERTEX_BASE_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
                            "VBP_FILES_BUCKET", "VBP_MODELS_FILE", "VBP_EMULATOR_OPENAI_KEY", "VBP_EMULATOR_AZURE_KEY"}
        assert env["VBP_FILES_BUCKET"] == "vbp-files"
        catalog = tomllib.loads(Path(env["VBP_MODELS_FILE"]).read_text())
        assert Path(env["VBP_MODELS_FILE"]).is_absolute() and len(catalog["deployment"]) == 23
        assert env["VBP_EMULATOR_OPENAI_KEY"] == "sk-fixed-for-this-run"
        assert len(env["VBP_EMULATOR_AZURE_KEY"]) == 32  # generated
        openai_files = httpx.get(f"{env['VBP_VERTEX_BASE_URL']}/openai-api/v1/files",
                                 headers={"Authorization": f"Bearer {env['VBP_EMULATOR_OPENAI_KEY']}"})
        assert openai_files.json() == {"object": "list", "data": [], "first_id": None, "last_id": None,
                                       "has_more": False}
        azure_batches = httpx.get(f"{env['VBP_VERTEX_BASE_URL']}/azure/eastus/openai/v1/batches",
                                  headers={"api-key": env["VBP_EMULATOR_AZURE_KEY"]})
        assert azure_batches.status_code == 200
        base = env["VBP_VERTEX_BASE_URL"]
        credentials_file = Path(env["GOOGLE_APPLICATION_CREDENTIALS"])

        gcs = storage.Client(project="your-project", credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
        assert gcs.lookup_bucket("vbp-files") is not None  # made at start, for the OpenAI door
        gcs.create_bucket("my-bucket").blob("input.jsonl").upload_from_string(INPUT)

        credentials = service_account.Credentials.from_service_account_file(
            str(credentials_file), scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(google.auth.transport.requests.Request())

        # curl -H "Authorization: Bearer $TOKEN" -X POST $VBP_VERTEX_BASE_URL/v1/projects/... -d @create-job.json
        headers = {"Authorization": f"Bearer {credentials.token}", "Content-Type": "application/json"}
        url = f"{base}/v1/projects/your-project/locations/us-central1/batchPredictionJobs"
        created = httpx.post(url, headers=headers, content=CREATE_JOB)
        assert created.status_code == 200, created.text
        name = created.json()["name"]
        deadline = time.monotonic() + 20
        while (job := httpx.get(f"{base}/v1/{name}", headers=headers).json())["state"] != "JOB_STATE_SUCCEEDED":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        directory = job["outputInfo"]["gcsOutputDirectory"].removeprefix("gs://my-bucket/")
        rows = [json.loads(line) for line in
                gcs.bucket("my-bucket").blob(f"{directory}/predictions.jsonl").download_as_text().splitlines()]
        assert [row["response"]["usageMetadata"]["promptTokenCount"] for row in rows] == [9, 9]  # 3 + 6, 3 + 6
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        for thread in reader:
            thread.join(timeout=5)  # it ends at the pipe's end of file
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0
    assert not credentials_file.exists()  # the temporary folder is cleaned up


def test_the_printed_lines_can_be_evaled_or_pasted_as_they_are(tmp_path: Path) -> None:
    """The three lines as printed, all at once through `eval` or pasted as a script, reach a child process; the
    credentials path is absolute even from a relative --workdir with a space in its name; --upload has run."""
    (tmp_path / "input.jsonl").write_text(INPUT)
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.emulator.command", "--port", "0", "--workdir", "google files",
         "--upload", "input.jsonl", "gs://my-bucket/team-a/input.jsonl"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )
    reader: list[threading.Thread] = []
    try:
        printed = "".join(_read_lines(process, reader))
        env = dict(filter(None, map(parse_export_line, printed.splitlines())))
        base, gcs_url = env["VBP_VERTEX_BASE_URL"], env["STORAGE_EMULATOR_HOST"]
        credentials = str(tmp_path / "google files" / "service-account.json")
        show = ("import os; print(os.environ['VBP_VERTEX_BASE_URL'], os.environ['STORAGE_EMULATOR_HOST'], "
                "os.environ['GOOGLE_APPLICATION_CREDENTIALS'], sep='\\n')")
        for script in (f'eval "$PRINTED"\n{sys.executable} -c "$SHOW"', f'{printed}{sys.executable} -c "$SHOW"'):
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd="/", capture_output=True, text=True,
                                  timeout=30, env={"PATH": "/usr/bin:/bin", "PRINTED": printed, "SHOW": show})
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines() == [base, gcs_url, credentials]
        assert base.startswith("http://127.0.0.1:") and Path(credentials).is_file()
        gcs = storage.Client(project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_url})
        assert gcs.bucket("my-bucket").blob("team-a/input.jsonl").download_as_text() == INPUT
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        for thread in reader:
            thread.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0


def test_upload_refuses_a_destination_that_names_no_object(tmp_path: Path) -> None:
    (tmp_path / "input.jsonl").write_text(INPUT)
    done = subprocess.run([sys.executable, "-m", "proxy.emulator.command", "--upload", "input.jsonl",
                           "gs://my-bucket/team-a/"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == ("Error: Invalid value for '--upload': gs://my-bucket/team-a/ names no "
                                           "object: give its full path, e.g. gs://my-bucket/input.jsonl.")
