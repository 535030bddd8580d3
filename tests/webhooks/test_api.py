"""`/v1/webhooks` (admin keys only) and `/v1/costs/lines`' refusals, through a running proxy, in Google's envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from proxy.tenancy.keys import create_key
from tests.metering.completion.conftest import submit, text_line, wait_metered
from tests.providers.vertex.conftest import Proxied, running
from tests.support.expected import output_rows

pytestmark = pytest.mark.slow  # a proxy in front of the emulator


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("hooks-api"), teams=("team-a", "team-b"), webhook_allow_loopback=True,
                 poller_enabled=True, poll_interval=0.2) as env:
        with env.sessions.begin() as session:
            key, secret = create_key(session, team="platform", name="admin", admin=True)
            env.keys["admin"], env.key_ids["admin"] = secret, key.id
        yield env


def test_admin_only_and_urls_checked(proxied: Proxied) -> None:
    with proxied.client("team-a") as client:
        reply = client.post("/v1/webhooks", json={"team": "team-a", "url": "https://8.8.8.8/h"})
    assert (reply.status_code, reply.json()) == (403, {"error": {
        "code": 403, "message": "This call needs an admin key.", "status": "PERMISSION_DENIED"}})
    with proxied.client("admin") as client:
        private = client.post("/v1/webhooks", json={"team": "team-a", "url": "https://10.0.0.7/h"})
        added = client.post("/v1/webhooks", json={"team": "team-a", "url": "http://127.0.0.1:9/h",
                                                  "events": ["job.failed"]})
        listed = client.get("/v1/webhooks", params={"team": "team-a"})
        deliveries = client.get("/v1/webhooks/deliveries", params={"failed": "true"})
        removed = client.delete(f"/v1/webhooks/{added.json()['id']}")
        shown = client.get(f"/v1/webhooks/{added.json()['id']}")
        again = client.delete(f"/v1/webhooks/{added.json()['id']}")
        nothing = client.post("/v1/webhooks/deliveries/999/redeliver")
    assert (private.status_code, private.json()["error"]) == (400, {
        "code": 400, "message": "10.0.0.7 resolves to 10.0.0.7, a private address", "status": "INVALID_ARGUMENT"})
    assert added.status_code == 200 and added.json()["secret"].startswith("whsec_")
    assert [(w["id"], w["events"]) for w in listed.json()["webhooks"]] == [(added.json()["id"], ["job.failed"])]
    assert "secret" not in listed.json()["webhooks"][0]
    assert deliveries.json() == {"deliveries": []}
    assert (removed.status_code, removed.json()) == (200, {})
    assert shown.json()["removed_at"] is not None
    assert again.status_code == 404 and nothing.status_code == 404


def test_cost_lines_refusals(proxied: Proxied) -> None:
    with proxied.client("team-a") as client:
        missing = client.get("/v1/costs/lines", params={"job": "projects/1/locations/l/batchPredictionJobs/2"})
        bad = client.get("/v1/costs/lines", params={"job": "x", "format": "xml"})
        none = client.get("/v1/costs/lines")
    assert (missing.status_code, missing.json()["error"]["message"]) == (
        404, "Job projects/1/locations/l/batchPredictionJobs/2 not found.")
    assert (bad.status_code, bad.json()["error"]["message"]) == (400, "format 'xml' is not jsonl or csv")
    assert (none.status_code, none.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_cost_lines_of_a_metered_job_over_http(proxied: Proxied) -> None:
    name = submit(proxied, "gemini-2.5-flash", [text_line("One?"), text_line("Two, please."), text_line("Three!")])
    job = wait_metered(proxied, name)
    with proxied.client("team-a") as client:
        jsonl = client.get("/v1/costs/lines", params={"job": name})
        table = client.get("/v1/costs/lines", params={"job": name, "format": "csv"})
    with proxied.client("team-b") as client:
        other = client.get("/v1/costs/lines", params={"job": name})
    assert jsonl.status_code == 200 and jsonl.headers["content-type"] == "application/jsonl"
    records = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert sum(Decimal(r["cost_usd"]) for r in records) * 10**12 == job.cost_pico
    rows = output_rows(proxied.stack.storage_client(), str(job.output_directory))
    assert sorted(r["tokens"]["prompt"] for r in records) == sorted(
        row["response"]["usageMetadata"]["promptTokenCount"] for row in rows)
    assert table.text.splitlines()[0] == ("line,key,status,tokens_prompt,tokens_cached,tokens_candidates,"
                                          "tokens_thoughts,tokens_tool_use_prompt,cost_usd")
    assert len(table.text.splitlines()) == 4
    assert (other.status_code, other.json()["error"]["message"]) == (404, f"Job {name} not found.")
