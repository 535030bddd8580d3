"""Reports grouped by provider and by deployment: jobs of Vertex (native door and catalog), OpenAI and two Azure
deployments put in the ledger through its own recording functions (`record_created`, then the metering claim and
finish), priced from the shipped tables; the groups and sums checked exactly, from the rollup and from the job
rows, on SQLite and PostgreSQL; and in JSON, CSV and the table of `vbp report`."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from proxy.cli import cli
from proxy.clock import utcnow
from proxy.emulator.oauth import ServiceAccount
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.jobs import record_created
from proxy.ledger.models import JobMetering
from proxy.metering import claims
from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable
from proxy.money import format_usd
from proxy.providers.base import SUCCEEDED, RowUsage
from proxy.reports.query import ReportFilter, run_report
from proxy.reports.render import to_document
from proxy.settings import Settings
from proxy.tenancy.keys import Principal, create_key
from tests.support.proxy_server import ProxyServer

CREATED = datetime(2026, 11, 2, 10, tzinfo=UTC)
TABLE = PricingTable.load()
_ids = itertools.count(1)
KEYS: dict[str, str] = {}  # team -> its key's id, in the ledger being filled


def record_job(session: Session, *, provider: str, deployment: str | None, model: str, team: str = "team-a",
               usage: RowUsage | None = None) -> int:
    """Record a job as created and ended, set the deployment it ran on, and meter it (priced from the shipped table
    when its provider prices the model, else unpriced; `usage` None: left in flight)."""
    n = next(_ids)
    reply = {"name": f"projects/p/locations/us-central1/batchPredictionJobs/{n}", "model": model,
             "state": "JOB_STATE_SUCCEEDED" if usage is not None else "JOB_STATE_RUNNING",
             "createTime": CREATED.isoformat().replace("+00:00", "Z"),
             "outputInfo": {"gcsOutputDirectory": f"gs://outputs/{n}"}}
    project, location = "p", "us-central1"
    if provider != "vertex":  # as the door records an OpenAI or Azure batch: named by its deployment and provider
        reply.update(name=f"{provider}/{deployment}/batches/batch_{n}", jobId=f"batch_{n}")
        project, location = str(deployment), provider
    key = KEYS.get(team) or KEYS.setdefault(team, create_key(session, team=team, name="reports")[0].id)
    job = record_created(session, reply=reply, request={}, principal=Principal(key_id=key, team=team),
                         api_version="v1", project=project, location=location, provider=provider,
                         deployment=deployment)
    if usage is None:
        return job.id
    rates = TABLE.rates_for(provider, model, CREATED)
    cost = price_row(usage, rates) if rates is not None else None
    status = "priced" if rates is not None else "unpriced"
    now = utcnow()
    token = claims.claim(session, job_pk=job.id, now=now, lease=60, force=True)  # as `vbp meter` does
    assert token is not None
    figures = {"cost_status": status, "cost_pico": cost, "prompt_tokens": usage.input,
               "cached_tokens": usage.cached_input, "candidates_tokens": usage.output,
               "thoughts_tokens": usage.reasoning, "lines_succeeded": 1}
    claims.finish(session, job_pk=job.id, token=token, now=now, state="metered", figures=figures,
                  history=JobMetering(job_pk=job.id, at=now, reason="meter", cost_status=status, cost_pico=cost))
    return job.id


def fill(sessions: sessionmaker[Session]) -> None:
    KEYS.clear()
    with sessions.begin() as session:
        # 0.000727: the worked Gemini line; a native-door job (no deployment) and one placed by the catalog
        flash = RowUsage(SUCCEEDED, input=1000, cached_input=400, output=200, reasoning=300)
        record_job(session, provider="vertex", deployment=None, model="gemini-2.5-flash", usage=flash)
        record_job(session, provider="vertex", deployment="vertex-gemini-2.5-flash", model="gemini-2.5-flash",
                   team="team-b", usage=flash)
        # 0.012: 6,000 uncached x 1.00 + 4,000 cached x 0.50 + 1,000 output x 4.00 per 1M
        record_job(session, provider="openai", deployment="openai-gpt-4.1", model="gpt-4.1", team="team-b",
                   usage=RowUsage(SUCCEEDED, input=10_000, cached_input=4_000, output=1_000))
        # 0.375 and 0.000075 on two Azure deployments of gpt-4o-mini (0.075 in, 0.30 out per 1M)
        record_job(session, provider="azure", deployment="azure-eastus-gpt-4o-mini", model="gpt-4o-mini",
                   usage=RowUsage(SUCCEEDED, input=1_000_000, output=1_000_000))
        record_job(session, provider="azure", deployment="azure-westus-gpt-4o-mini", model="gpt-4o-mini",
                   usage=RowUsage(SUCCEEDED, input=1_000))
        # a model Azure's table does not price: unpriced, its tokens counted, never $0
        record_job(session, provider="azure", deployment="azure-westus-gpt-4o-mini", model="gpt-9-custom",
                   usage=RowUsage(SUCCEEDED, input=50, output=5))
        record_job(session, provider="openai", deployment="openai-gpt-4.1", model="gpt-4.1")  # in flight


def both_sources(sessions: sessionmaker[Session], by: tuple[str, ...]) -> dict[str, Any]:
    with sessions() as session:
        rollup = to_document(run_report(session, by=by, filter=ReportFilter(), source="rollup"))
        jobs = to_document(run_report(session, by=by, filter=ReportFilter(), source="jobs"))
    assert rollup == jobs
    return rollup


def brief(document: dict[str, Any], by: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [(*(row[k] for k in by), row["jobs"], row["cost_usd"], row["tokens"]["prompt"], row["unpriced_jobs"])
            for row in document["rows"]]


def test_by_provider_and_by_deployment_group_and_sum_exactly(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    by_provider = both_sources(sessions, ("provider",))
    assert brief(by_provider, ("provider",)) == [
        ("azure", 3, "0.375075", 1_001_050, 1),
        ("openai", 1, "0.012", 10_000, 0),
        ("vertex", 2, "0.001454", 2_000, 0),
    ]
    assert (by_provider["totals"]["jobs"], by_provider["totals"]["cost_usd"], by_provider["in_flight_jobs"]) == (
        6, format_usd(375_075_000_000 + 12_000_000_000 + 2 * 727_000_000), 1)
    assert by_provider["totals"]["cost_usd"] == "0.388529"
    by_deployment = both_sources(sessions, ("provider", "deployment"))
    # The native door's job names no deployment: its key is "" (sorted first), never merged with the catalog's.
    assert brief(by_deployment, ("provider", "deployment")) == [
        ("azure", "azure-eastus-gpt-4o-mini", 1, "0.375", 1_000_000, 0),
        ("azure", "azure-westus-gpt-4o-mini", 2, "0.000075", 1_050, 1),
        ("openai", "openai-gpt-4.1", 1, "0.012", 10_000, 0),
        ("vertex", "", 1, "0.000727", 1_000, 0),
        ("vertex", "vertex-gemini-2.5-flash", 1, "0.000727", 1_000, 0),
    ]
    by_team = both_sources(sessions, ("deployment", "team"))
    assert [(row["deployment"], row["team"], row["cost_usd"]) for row in by_team["rows"]] == [
        ("", "team-a", "0.000727"), ("azure-eastus-gpt-4o-mini", "team-a", "0.375"),
        ("azure-westus-gpt-4o-mini", "team-a", "0.000075"), ("openai-gpt-4.1", "team-b", "0.012"),
        ("vertex-gemini-2.5-flash", "team-b", "0.000727")]


def test_vbp_report_by_provider_as_csv_json_and_table(tmp_path: Path) -> None:
    # On SQLite only: the query is the one checked on both databases above, and `vbp` run in this process would
    # leave its PostgreSQL connections to the collector.
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        fill(make_sessionmaker(engine))
    finally:
        engine.dispose()

    def vbp(*args: str) -> str:
        result = CliRunner().invoke(cli, ["report", *args], env={"VBP_DATABASE_URL": url, "COLUMNS": "200"},
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    rows = list(csv.DictReader(io.StringIO(vbp("--by", "provider,deployment", "--format", "csv"))))
    assert [(r["provider"], r["deployment"], r["jobs"], r["cost_usd"], r["unpriced_jobs"]) for r in rows] == [
        ("azure", "azure-eastus-gpt-4o-mini", "1", "0.375", "0"),
        ("azure", "azure-westus-gpt-4o-mini", "2", "0.000075", "1"),
        ("openai", "openai-gpt-4.1", "1", "0.012", "0"),
        ("vertex", "", "1", "0.000727", "0"),
        ("vertex", "vertex-gemini-2.5-flash", "1", "0.000727", "0"),
    ]
    document = json.loads(vbp("--by", "provider", "--format", "json"))
    assert [(r["provider"], r["cost_usd"]) for r in document["rows"]] == [
        ("azure", "0.375075"), ("openai", "0.012"), ("vertex", "0.001454")]
    table = vbp("--by", "provider")
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["PROVIDER", "JOBS", "COST_USD"]
    assert [line.split()[:3] for line in lines[2:5]] == [
        ["azure", "3", "0.375075*"], ["openai", "1", "0.012"], ["vertex", "2", "0.001454"]]
    assert lines[6].split()[:3] == ["TOTAL", "6", "0.388529*"]
    assert "1 job(s) in flight (not metered yet) are not included: 1 running" in table


@pytest.mark.slow  # starts a proxy
def test_costs_and_the_dashboard_by_provider_and_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "service-account.json"  # found without a network call; no token is asked for here
    ServiceAccount.generate(token_uri="http://127.0.0.1:9/token").write(account)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        fill(sessions)
        with sessions.begin() as session:
            secret = create_key(session, team="platform", name="admin", admin=True)[1]
    finally:
        engine.dispose()
    proxy = ProxyServer(Settings(database_url=url, poller_enabled=False, reconcile_interval=0.0)).start()
    try:
        with httpx.Client(base_url=proxy.url, timeout=30) as client:
            bearer = {"Authorization": f"Bearer {secret}"}
            reply = client.get("/v1/costs", params={"by": "provider,deployment"}, headers=bearer)
            assert reply.status_code == 200, reply.text
            assert brief(reply.json(), ("provider", "deployment")) == [
                ("azure", "azure-eastus-gpt-4o-mini", 1, "0.375", 1_000_000, 0),
                ("azure", "azure-westus-gpt-4o-mini", 2, "0.000075", 1_050, 1),
                ("openai", "openai-gpt-4.1", 1, "0.012", 10_000, 0),
                ("vertex", "", 1, "0.000727", 1_000, 0),
                ("vertex", "vertex-gemini-2.5-flash", 1, "0.000727", 1_000, 0),
            ]
            csv_reply = client.get("/v1/costs", params={"by": "provider", "format": "csv"}, headers=bearer)
            assert [(r["provider"], r["jobs"], r["cost_usd"]) for r in csv.DictReader(io.StringIO(csv_reply.text))] == [
                ("azure", "3", "0.375075"), ("openai", "1", "0.012"), ("vertex", "2", "0.001454")]
            assert csv_reply.headers["x-vbp-in-flight-jobs"] == "1"
            assert client.post("/dashboard/login", data={"key": secret}).status_code == 303
            page = client.get("/dashboard", params={"since": "2026-11-01", "until": "2026-12-01"}).text
    finally:
        proxy.stop()
    table = page.split('<table id="by-provider-deployment">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr( class="flag")? data-provider="([^"]*)" data-deployment="([^"]*)"><td>[^<]*</td>'
                      r'<td>[^<]*</td><td class="n">(\d+)</td><td class="n cost">([^<]*)</td>', table)
    # The group with an unpriced job is flagged; its cost sums its priced job only.
    assert rows == [("", "azure", "azure-eastus-gpt-4o-mini", "1", "0.375"),
                    (' class="flag"', "azure", "azure-westus-gpt-4o-mini", "2", "0.000075"),
                    ("", "openai", "openai-gpt-4.1", "1", "0.012"), ("", "vertex", "", "1", "0.000727"),
                    ("", "vertex", "vertex-gemini-2.5-flash", "1", "0.000727")]
    assert re.search(r'id="provider-totals-row"><td>Total</td><td></td><td class="n">6</td><td class="n cost">'
                     r"0.388529</td>", table), table
