"""`make demo`: the whole flow on this machine, with no Google account.

Starts `vbp emulator` (Vertex, OAuth2 and Cloud Storage stand-ins, with the example input uploaded under the
team's prefix) and `vbp serve` (on a fresh SQLite ledger) as child processes, creates a team key, submits a batch
job through the proxy with the same plain HTTP call the README shows for curl, follows it to the end, runs one
OpenAI-format batch through the OpenAI door (`demo_openai`), waits for the proxy to meter both, and prints the cost
report. Every child process is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from proxy.emulator.catalog import provider_first
from proxy.emulator.command import export_lines, parse_export_line
from proxy.emulator.demo_openai import run_openai_batch
from proxy.emulator.storage import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEAM = "demo-team"
OPENAI_MODEL, AZURE_MODEL = "gpt-4.1-mini", "gpt-4o-mini"  # the second runs on Azure (see `run`)
# Each team may only name Cloud Storage locations under its own prefix (VBP_TEAM_GCS_PREFIXES); the README's
# examples use team-a's, the demo the same paths under its own team.
TEAM_PREFIXES = "gs://my-bucket/{team}/"
README_PREFIX, DEMO_PREFIX = "gs://my-bucket/team-a/", f"gs://my-bucket/{TEAM}/"
INPUT_URI = f"{DEMO_PREFIX}input.jsonl"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def vbp(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "proxy", *args], env=env, text=True, capture_output=True,
                          timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"vbp {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@contextmanager
def child(args: list[str], *, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """A `vbp` child process that is always stopped, whatever happens."""
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "proxy", *args], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=out)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if process.stdout is not None:
            process.stdout.close()


def read_env_lines(process: subprocess.Popen[str], log: Path) -> dict[str, str]:
    """The `export KEY=value` lines `vbp emulator` prints once it serves, read as a shell reads them."""
    wanted = {"VBP_VERTEX_BASE_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "VBP_FILES_BUCKET",
              "VBP_MODELS_FILE", "VBP_EMULATOR_OPENAI_KEY", "VBP_EMULATOR_AZURE_KEY"}
    found: dict[str, str] = {}
    assert process.stdout is not None
    while not wanted <= found.keys():
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"vbp emulator stopped early:\n{log.read_text()}")
        parsed = parse_export_line(line)
        if parsed is not None:
            found[parsed[0]] = parsed[1]
    return found


def wait_healthy(url: str, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"vbp serve stopped:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"vbp serve did not become ready:\n{log.read_text()}")


def create_body() -> bytes:
    """examples/create-job.json with its Cloud Storage paths moved from team-a's prefix to the demo team's."""
    text = (EXAMPLES / "create-job.json").read_text()
    if README_PREFIX not in text:
        raise SystemExit(f"examples/create-job.json names no path under {README_PREFIX}")
    return text.replace(README_PREFIX, DEMO_PREFIX).encode()


def run(workdir: Path) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("VBP_")}
    emulator_log, proxy_log = workdir / "emulator.log", workdir / "proxy.log"
    say("Starting the local Google stand-ins, with the example input in their Cloud Storage: "
        f"vbp emulator --upload examples/input.jsonl {INPUT_URI}")
    with child(["emulator", "--port", "0", "--job-seconds", "6", "--workdir", str(workdir / "google"),
                "--upload", str(EXAMPLES / "input.jsonl"), INPUT_URI], env=base_env, log=emulator_log) as emulator:
        google = read_env_lines(emulator, emulator_log)
        for line in export_lines(google):
            print(f"    {line}")
        port = free_port()
        # The models gpt-4o-mini shares with OpenAI run on Azure: its deployments first (`provider_first`).
        models = provider_first(Path(google["VBP_MODELS_FILE"]), "azure", workdir / "models.toml")
        env = {**base_env, **google, "VBP_MODELS_FILE": str(models),
               "VBP_DATABASE_URL": f"sqlite:///{workdir / 'vbp.db'}",
               "VBP_PROJECT_ALIASES": "your-project=my-real-project", "VBP_TEAM_GCS_PREFIXES": TEAM_PREFIXES,
               "VBP_POLL_INTERVAL": "1"}
        proxy_url = f"http://127.0.0.1:{port}"
        say(f"Starting the proxy on SQLite, each team kept to {TEAM_PREFIXES} in Cloud Storage: "
            f"vbp serve --port {port}")
        with child(["serve", "--port", str(port)], env=env, log=proxy_log) as proxy:
            wait_healthy(proxy_url, proxy, proxy_log)
            say(f"Creating a key for team {TEAM!r}: vbp keys create --team {TEAM} --json")
            key = json.loads(vbp("keys", "create", "--team", TEAM, "--name", "demo", "--json", env=env))["key"]
            print(f"    key: {key[:10]}... (shown once)")
            say(f"Creating a batch job through the proxy (the README's curl call, paths under {DEMO_PREFIX})")
            jobs_url = f"{proxy_url}/v1/projects/your-project/locations/us-central1/batchPredictionJobs"
            print(f"    curl -X POST {jobs_url} \\\n         -H 'Authorization: Bearer $VBP_KEY' "
                  "-H 'Content-Type: application/json' -d @examples/create-job.json")
            reply = httpx.post(jobs_url, content=create_body(), timeout=30,
                               headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            if reply.status_code != 200:
                raise SystemExit(f"create failed: {reply.status_code} {reply.text}")
            name = reply.json()["name"]
            print(f"    {name}")
            follow(proxy_url, key, name)
            batches = [run_openai_batch(proxy_url, key, say),
                       run_openai_batch(proxy_url, key, say, model=OPENAI_MODEL, where="on the OpenAI stand-in"),
                       run_openai_batch(proxy_url, key, say, model=AZURE_MODEL, where="on an Azure stand-in")]
            say("Waiting for the proxy to meter every job (its poller reads the outputs from Cloud Storage; "
                "OpenAI's and Azure's are mirrored there when they end)")
            for ran in (name, *batches):
                wait_metered(env, ran)
            say("Cost report: vbp report --by job")
            print(vbp("report", "--by", "job", env=env))
            say("Cost report: vbp report --by team,model")
            print(vbp("report", "--by", "team,model", env=env))
            say("Where each batch ran: vbp report --by model,project,location (an OpenAI or Azure job's project is "
                "its catalog deployment, its location the provider)")
            print(vbp("report", "--by", "model,project,location", env=env))
    say("Done: the emulator and the proxy are stopped. Next: README.md, Quickstart.")


def follow(proxy_url: str, key: str, name: str) -> None:
    """Show the job's state as it moves, the way a client polls it."""
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = httpx.get(f"{proxy_url}/v1/{name}", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
        if job["state"] != last:
            last = job["state"]
            stats = job.get("completionStats", {})
            print(f"    {time.strftime('%H:%M:%S')}  {last}" + (f"  {stats}" if stats else ""), flush=True)
        if last in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
                    "JOB_STATE_PARTIALLY_SUCCEEDED"):
            return
        time.sleep(1)
    raise SystemExit("the job did not finish in time")


def wait_metered(env: dict[str, str], name: str) -> None:
    """Wait until the job (by its Vertex name, or its OpenAI-door batch id) is metered."""
    from sqlalchemy import select

    from proxy.ledger.engine import make_engine
    from proxy.ledger.models import Job

    engine = make_engine(env["VBP_DATABASE_URL"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                state = conn.execute(select(Job.metering_state).where(
                    (Job.name == name) | (Job.batch_id == name))).scalar()
            if state in ("metered", "unmeterable"):
                return
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise SystemExit("the job was not metered in time")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="vbp-demo-") as folder:
        try:
            run(Path(folder))
        except KeyboardInterrupt:
            say("Interrupted: stopping the emulator and the proxy")
            sys.exit(130)


if __name__ == "__main__":
    main()
