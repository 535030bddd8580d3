"""Running jobs: the output rows and their token counts, failed rows, embeddings, failures and cancel."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.cloud import storage

from proxy.emulator.stack import EmulatorStack
from tests.emulator.support import create, job_body, output_rows, unique, upload_lines, wait_done

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

PROCESSED_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def tokens(text: str) -> int:
    """The documented text rule, written out independently of proxy.emulator.usage_rule."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def expected_usage(model: str, request: dict[str, Any]) -> dict[str, int]:
    """Rules 2-6 of usage_rule's docstring for text-and-audio requests, recomputed here from the input."""
    text = audio = 0
    blocks = [*request["contents"], *([request["systemInstruction"]] if "systemInstruction" in request else [])]
    for block in blocks:
        for part in block["parts"]:
            if "text" in part:
                text += tokens(part["text"])
            else:
                size = len(base64.b64decode(part["inlineData"]["data"]))
                audio += 32 * max(1, -(-size // 16000))
    prompt = text + audio
    cached = (3 * text // 4 + 3 * audio // 4) if "cachedContent" in request else 0
    natural = min(1000, 20 + prompt // 10)
    limit = request.get("generationConfig", {}).get("maxOutputTokens")
    thinks = model.startswith("gemini-2.5") and "lite" not in model
    candidates, thoughts = natural, (4 * natural if thinks else 0)
    if limit and candidates + thoughts > limit:
        # thinking counts inside the cap: thought and answer share it 4 : 1, each at least one token
        thoughts = min(limit - 1, max(1, limit * 4 // 5)) if thinks else 0
        candidates = limit - thoughts
    return {"promptTokenCount": prompt, "cachedContentTokenCount": cached, "candidatesTokenCount": candidates,
            "thoughtsTokenCount": thoughts, "totalTokenCount": prompt + candidates + thoughts, "audio": audio}


def _user(text: str, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


AUDIO = base64.b64encode(bytes(50_000)).decode()  # 50,000 bytes: 4 started seconds = 128 AUDIO tokens
REQUESTS = {
    "sample": {"contents": [{"role": "user", "parts": [{"text": "Hello world!"}]}],
               "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
               "generationConfig": {"maxOutputTokens": 10}},
    "plain": _user("What is the capital of France? Answer in one word."),
    "cached": _user(" ".join(["context"] * 400), cachedContent="projects/p/locations/l/cachedContents/42"),
    "audio": {"contents": [{"role": "user", "parts": [{"text": "Transcribe this."},
                                                       {"inlineData": {"mimeType": "audio/wav", "data": AUDIO}}]}]},
    "multi-turn": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                                {"role": "model", "parts": [{"text": "Hello! How can I help?"}]},
                                {"role": "user", "parts": [{"text": "Tell me a joke."}]}]},
    "long": _user("word " * 200_001),
}


@pytest.fixture(scope="module")
def finished_job(http: httpx.Client, bucket: storage.Bucket) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    lines: list[Any] = [{"custom_id": key, "request": request} for key, request in REQUESTS.items()]
    lines += [
        {"custom_id": "bad-role", "request": {"contents": [{"role": "system", "parts": [{"text": "Hi"}]}]}},
        {"custom_id": "no-contents", "request": {"contents": []}},
        {"custom_id": "no-request", "prompt": "Hi"},
        "this line is not JSON",
    ]
    job = create(http, job_body(upload_lines(bucket, lines), bucket, model="publishers/google/models/gemini-2.5-pro"))
    done = wait_done(http, job["name"])
    yield done, output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"])


def test_the_job_succeeds_with_vertex_shaped_fields(finished_job: tuple[dict[str, Any], list[Any]]) -> None:
    job, rows = finished_job
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    assert job["completionStats"] == {"successfulCount": "6", "failedCount": "4"}
    assert "error" not in job
    assert job["createTime"] < job["startTime"] < job["endTime"] == job["updateTime"]
    prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"]
    assert job["outputInfo"]["gcsOutputDirectory"] == f"{prefix}prediction-model-{job['createTime']}"
    assert len(rows) == 10


def test_rows_carry_the_documented_token_counts(finished_job: tuple[dict[str, Any], list[Any]]) -> None:
    _, rows = finished_job
    by_id = {row.get("custom_id"): row for row in rows}
    for key, request in REQUESTS.items():
        row = by_id[key]
        assert row["status"] == ""
        assert PROCESSED_RE.fullmatch(row["processed_time"])
        response = row["response"]
        assert response["modelVersion"] == "gemini-2.5-pro"
        meta = response["usageMetadata"]
        expected = expected_usage("gemini-2.5-pro", request)
        for field in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount"):
            assert meta[field] == expected[field], (key, field)
        assert meta.get("cachedContentTokenCount", 0) == expected["cachedContentTokenCount"], key
        assert meta["trafficType"] == "ON_DEMAND"
        assert sum(d["tokenCount"] for d in meta["promptTokensDetails"]) == meta["promptTokenCount"]
        assert meta["candidatesTokensDetails"] == [{"modality": "TEXT", "tokenCount": meta["candidatesTokenCount"]}]
        answer = response["candidates"][0]["content"]["parts"][0]["text"]
        assert tokens(answer) == meta["candidatesTokenCount"]


def test_hand_computed_figures(finished_job: tuple[dict[str, Any], list[Any]]) -> None:
    _, rows = finished_job
    by_id = {row.get("custom_id"): row["response"]["usageMetadata"] for row in rows if "response" in row}
    # "Hello world!" (3) + "You are a helpful assistant." (6); natural answer 20 + 9 // 10 = 20, thoughts 4 x 20;
    # 100 > the cap of 10, which thinking counts inside: floor(10 * 80 / 100) = 8 thoughts, 10 - 8 = 2 answer tokens.
    assert (by_id["sample"]["promptTokenCount"], by_id["sample"]["candidatesTokenCount"],
            by_id["sample"]["thoughtsTokenCount"], by_id["sample"]["totalTokenCount"]) == (9, 2, 8, 19)
    # 400 words, cached: floor(3 * 400 / 4) = 300; answer 20 + 40 = 60; thoughts 240.
    assert by_id["cached"]["cachedContentTokenCount"] == 300
    assert by_id["cached"]["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 300}]
    assert by_id["cached"]["totalTokenCount"] == 400 + 60 + 240
    # "Transcribe this." = 3 TEXT; 50,000 audio bytes = 4 seconds = 128 AUDIO.
    assert by_id["audio"]["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": 3},
                                                     {"modality": "AUDIO", "tokenCount": 128}]
    # 200,001 words: over the 200k long-context tier.
    assert by_id["long"]["promptTokenCount"] == 200_001
    assert by_id["long"]["candidatesTokenCount"] == 1000


def test_rows_echo_the_request_and_extra_keys(finished_job: tuple[dict[str, Any], list[Any]]) -> None:
    _, rows = finished_job
    sample = next(row for row in rows if row.get("custom_id") == "sample")
    assert list(sample) == ["custom_id", "status", "processed_time", "request", "response"]
    assert sample["request"] == {  # re-serialised as Vertex does: sorted keys, snake_case in places
        "contents": [{"parts": [{"text": "Hello world!"}], "role": "user"}],
        "generationConfig": {"max_output_tokens": 10},
        "system_instruction": {"parts": [{"text": "You are a helpful assistant."}]},
    }
    assert sample["response"]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_invalid_lines_become_failed_rows(finished_job: tuple[dict[str, Any], list[Any]]) -> None:
    _, rows = finished_job
    failed = [row for row in rows if row["status"]]
    assert len(failed) == 4
    for row in failed:
        assert "response" not in row
        assert PROCESSED_RE.fullmatch(row["processed_time"])
        phrase, _, payload = row["status"].partition(": ")
        assert phrase == "Bad Request"
        assert json.loads(payload)["error"]["status"] == "INVALID_ARGUMENT"
    by_id = {row.get("custom_id"): row for row in failed}
    assert "Please use a valid role: user, model." in by_id["bad-role"]["status"]
    assert "empty contents" in by_id["no-contents"]["status"]
    assert by_id["bad-role"]["request"] == {"contents": [{"parts": [{"text": "Hi"}], "role": "system"}]}


def test_many_lines_come_out_shuffled(http: httpx.Client, bucket: storage.Bucket) -> None:
    lines = [{"custom_id": f"{i:03d}", "request": _user(f"question {i}")} for i in range(40)]
    done = wait_done(http, create(http, job_body(upload_lines(bucket, lines), bucket))["name"])
    rows = output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"])
    ids = [row["custom_id"] for row in rows]
    assert sorted(ids) == [f"{i:03d}" for i in range(40)]
    assert ids != sorted(ids)


def test_wildcard_inputs_read_every_matching_object(http: httpx.Client, bucket: storage.Bucket) -> None:
    folder = unique("parts")
    upload_lines(bucket, [{"custom_id": "a", "request": _user("one")}], name=f"{folder}/part-1.jsonl")
    upload_lines(bucket, [{"custom_id": "b", "request": _user("two")}], name=f"{folder}/part-2.jsonl")
    upload_lines(bucket, [{"custom_id": "c", "request": _user("three")}], name=f"{folder}/other.jsonl")
    upload_lines(bucket, [{"custom_id": "d", "request": _user("four")}], name=f"{folder}/sub/part-3.jsonl")
    done = wait_done(http, create(http, job_body(f"gs://{bucket.name}/{folder}/part-*.jsonl", bucket))["name"])
    rows = output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"])
    assert sorted(row["custom_id"] for row in rows) == ["a", "b"]


@pytest.mark.parametrize(("model", "dimensions"), [("text-embedding-005", 768), ("gemini-embedding-001", 3072)])
def test_embedding_jobs(http: httpx.Client, bucket: storage.Bucket, model: str, dimensions: int) -> None:
    lines = [{"content": "What is the meaning of life?"}, {"content": "Hello, world"}, {"title": "no content"}]
    done = wait_done(http, create(http, job_body(upload_lines(bucket, lines), bucket,
                                                 model=f"publishers/google/models/{model}"))["name"])
    assert done["completionStats"] == {"successfulCount": "2", "failedCount": "1"}
    rows = {json.dumps(row["instance"]): row for row in output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"])}
    life = rows[json.dumps({"content": "What is the meaning of life?"})]
    assert list(life) == ["instance", "predictions", "status"]
    assert life["status"] == ""
    embeddings = life["predictions"][0]["embeddings"]
    assert embeddings["statistics"] == {"token_count": 7, "truncated": False}
    assert len(embeddings["values"]) == dimensions
    assert abs(sum(v * v for v in embeddings["values"]) - 1) < 1e-3
    assert rows[json.dumps({"content": "Hello, world"})]["predictions"][0]["embeddings"]["statistics"] == {
        "token_count": 3, "truncated": False}
    bad = rows[json.dumps({"title": "no content"})]
    assert bad["status"].startswith("Bad Request: ") and "predictions" not in bad


@pytest.mark.parametrize("where", ["input bucket", "input object", "output bucket"])
def test_missing_storage_fails_the_job_later(http: httpx.Client, bucket: storage.Bucket, where: str) -> None:
    input_uri = upload_lines(bucket, [{"request": _user("Hi")}])
    body = job_body(input_uri, bucket)
    if where == "input bucket":
        body["inputConfig"]["gcsSource"]["uris"] = ["gs://no-such-bucket-here/input.jsonl"]
    elif where == "input object":
        body["inputConfig"]["gcsSource"]["uris"] = [f"gs://{bucket.name}/{unique('missing')}.jsonl"]
    else:
        body["outputConfig"]["gcsDestination"]["outputUriPrefix"] = "gs://no-such-output-bucket/out/"
    job = create(http, body)
    assert job["state"] == "JOB_STATE_PENDING"  # accepted at create, as Vertex does
    done = wait_done(http, job["name"])
    assert done["state"] == "JOB_STATE_FAILED"
    assert done["error"]["code"] == 9
    assert done["error"]["message"]


def test_states_move_pending_running_succeeded(http: httpx.Client, bucket: storage.Bucket,
                                               stack: EmulatorStack) -> None:
    job = create(http, job_body(upload_lines(bucket, [{"request": _user("Hi")}] * 3), bucket))
    seen = [job["state"]]
    while seen[-1] != "JOB_STATE_SUCCEEDED":
        state = http.get(f"/v1/{job['name']}").json()["state"]
        if state != seen[-1]:
            seen.append(state)
        time.sleep(0.02)
    assert seen == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]


def test_cancel_keeps_the_rows_already_written(http: httpx.Client, bucket: storage.Bucket,
                                               stack: EmulatorStack) -> None:
    lines = [{"custom_id": str(i), "request": _user(f"line {i}")} for i in range(20)]
    previous, stack.state.job_seconds = stack.state.job_seconds, 4.0  # 1 s pending, then 20 rows over 3 s
    try:
        job = create(http, job_body(upload_lines(bucket, lines), bucket))
    finally:
        stack.state.job_seconds = previous
    while http.get(f"/v1/{job['name']}").json()["state"] != "JOB_STATE_RUNNING":
        time.sleep(0.02)
    time.sleep(1.2)
    cancel = http.post(f"/v1/{job['name']}:cancel")  # an empty body, as google-genai sends
    assert (cancel.status_code, cancel.json()) == (200, {})
    assert http.get(f"/v1/{job['name']}").json()["state"] in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    done = wait_done(http, job["name"])
    assert done["state"] == "JOB_STATE_CANCELLED"
    assert done["error"]["code"] == 1
    rows = output_rows(bucket, done["outputInfo"]["gcsOutputDirectory"])
    assert 0 < len(rows) < 20
    assert all(row["status"] == "" and "response" in row for row in rows)
    stats = done["completionStats"]
    assert int(stats["successfulCount"]) == len(rows)
    assert int(stats["incompleteCount"]) == 20 - len(rows)
    again = http.post(f"/v1/{job['name']}:cancel", json={})
    assert again.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_cancel_while_pending_writes_nothing(http: httpx.Client, bucket: storage.Bucket) -> None:
    job = create(http, job_body(upload_lines(bucket, [{"request": _user("Hi")}]), bucket))
    assert http.post(f"/v1/{job['name']}:cancel", json={}).json() == {}
    done = wait_done(http, job["name"])
    assert done["state"] == "JOB_STATE_CANCELLED"
    assert "completionStats" not in done and "outputInfo" not in done
