"""The OpenAI door's part of `make demo`: OpenAI-format batches (examples/openai-batch.jsonl, its model replaced to
run on OpenAI or Azure) uploaded, run and read back through the proxy, with the `openai` SDK when it is installed,
else with plain HTTP calls (httpx)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BATCH_FILE = Path(__file__).resolve().parents[2] / "examples" / "openai-batch.jsonl"
ENDED = ("completed", "failed", "cancelled", "expired")


def batch_lines(model: str | None) -> bytes:
    """The example batch file, each line's model set to `model` (None: as it is, a Gemini model)."""
    data = BATCH_FILE.read_bytes()
    if model is None:
        return data
    rows = [json.loads(line) for line in data.splitlines() if line.strip()]
    for row in rows:
        row["body"]["model"] = model
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def run_openai_batch(proxy_url: str, key: str, say: Callable[[str], None], *, model: str | None = None,
                     where: str = "") -> str:
    """Upload, create, follow to the end and print the output lines; returns the batch id."""
    data = batch_lines(model)
    what = f"an OpenAI-format batch of {model} ({where})" if model else "an OpenAI-format batch"
    try:
        import openai
    except ImportError:
        say(f"Running {what} through the OpenAI door (plain HTTP: the openai SDK is not installed)")
        return _with_httpx(proxy_url, key, data)
    say(f"Running {what} through the OpenAI door with the openai SDK")
    client = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=key)
    print(f"    client.files.create(file=open('examples/{BATCH_FILE.name}', 'rb'), purpose='batch')"
          + (f"  # with \"model\": \"{model}\"" if model else ""))
    file = client.files.create(file=(BATCH_FILE.name, data), purpose="batch")
    print(f"    {file.id}  ({file.bytes} bytes)")
    print("    client.batches.create(input_file_id=..., endpoint='/v1/chat/completions', completion_window='24h')")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = _follow(lambda: client.batches.retrieve(batch.id).model_dump())
    if done["status"] != "completed" or not done["output_file_id"]:
        raise SystemExit(f"the OpenAI batch ended {done['status']}: {done.get('errors')}")
    _show(client.files.content(done["output_file_id"]).content)
    return batch.id


def _with_httpx(proxy_url: str, key: str, data: bytes) -> str:
    http = httpx.Client(base_url=f"{proxy_url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    file = _ok(http.post("/files", files={"file": (BATCH_FILE.name, data)}, data={"purpose": "batch"}))
    print(f"    POST /v1/files: {file['id']}  ({file['bytes']} bytes)")
    batch = _ok(http.post("/batches", json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                                            "completion_window": "24h"}))
    print(f"    POST /v1/batches: {batch['id']}")
    done = _follow(lambda: _ok(http.get(f"/batches/{batch['id']}")))
    if done["status"] != "completed" or not done["output_file_id"]:
        raise SystemExit(f"the OpenAI batch ended {done['status']}: {done.get('errors')}")
    reply = http.get(f"/files/{done['output_file_id']}/content")
    _ok(reply, json_body=False)
    _show(reply.content)
    return str(batch["id"])


def _ok(reply: httpx.Response, *, json_body: bool = True) -> Any:
    if reply.status_code != 200:
        raise SystemExit(f"{reply.request.method} {reply.request.url.path} failed: {reply.status_code} {reply.text}")
    return reply.json() if json_body else None


def _follow(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The batch's status as it moves, the way a client polls it."""
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch = read()
        if batch["status"] != last:
            last = batch["status"]
            counts = batch["request_counts"] or {}
            print(f"    {time.strftime('%H:%M:%S')}  {last}  {counts.get('completed', 0)} of {counts.get('total', 0)} "
                  f"requests done, {counts.get('failed', 0)} failed", flush=True)
        if last in ENDED:
            return batch
        time.sleep(1)
    raise SystemExit("the OpenAI batch did not finish in time")


def _show(content: bytes) -> None:
    for line in content.splitlines():
        row = json.loads(line)
        usage = row["response"]["body"]["usage"] if row.get("response") else None
        print(f"    {row['custom_id']}: {json.dumps(usage) if usage else row.get('error')}")
