"""`vbp webhooks` and `vbp report lines` on a real SQLite ledger (click's runner, the environment's settings)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from proxy.cli import cli
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.webhooks.outbox import enqueue_event


def _runner(tmp_path: Path, **env: str) -> tuple[CliRunner, str]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return CliRunner(env={"VBP_DATABASE_URL": url, **env}), url


def test_add_list_deliveries_redeliver_remove(tmp_path: Path) -> None:
    runner, url = _runner(tmp_path, VBP_WEBHOOK_ALLOW_LOOPBACK="true")
    refused = runner.invoke(cli, ["webhooks", "add", "--team", "team-a", "--url", "https://169.254.169.254/x"])
    assert refused.exit_code == 1
    assert "Error: 169.254.169.254 resolves to 169.254.169.254, a cloud metadata address" in refused.output
    added = runner.invoke(cli, ["webhooks", "add", "--team", "team-a", "--url", "http://127.0.0.1:9/h",
                                "--event", "job.metered", "--json"])
    assert added.exit_code == 0, added.output
    view = json.loads(added.stdout)
    assert view["secret"].startswith("whsec_") and view["events"] == ["job.metered"]
    listed = json.loads(runner.invoke(cli, ["webhooks", "list", "--json"]).stdout)
    assert [(v["id"], v["url"]) for v in listed] == [(view["id"], "http://127.0.0.1:9/h")]
    assert "secret" not in listed[0]
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        event_id = enqueue_event(session, team="team-a", type="job.metered", data={"job": "j"}, dedupe_key="k")
    engine.dispose()
    shown = runner.invoke(cli, ["webhooks", "deliveries"])
    assert f"     1 pending   job.metered    {event_id} http://127.0.0.1:9/h tries=0 j  (not tried yet)" in shown.stdout
    assert runner.invoke(cli, ["webhooks", "deliveries", "--failed"]).stdout == "no deliveries\n"
    assert runner.invoke(cli, ["webhooks", "redeliver", "1"]).stdout == f"delivery 1 ({event_id}) is pending again\n"
    assert runner.invoke(cli, ["webhooks", "remove", view["id"]]).stdout == f"removed {view['id']}\n"
    failed = json.loads(runner.invoke(cli, ["webhooks", "deliveries", "--failed", "--json"]).stdout)
    assert [(d["webhook_id"], d["state"], d["last_error"]) for d in failed] == [
        (event_id, "failed", "the endpoint was removed")]
    assert runner.invoke(cli, ["webhooks", "remove", view["id"]]).exit_code == 1


def test_plain_http_needs_the_development_setting(tmp_path: Path) -> None:
    runner, _ = _runner(tmp_path)
    done = runner.invoke(cli, ["webhooks", "add", "--team", "team-a", "--url", "http://127.0.0.1:9/h"])
    assert done.exit_code == 1
    assert ("Error: only https URLs are allowed (plain http only to loopback, with VBP_WEBHOOK_ALLOW_LOOPBACK=true)"
            in done.output)


def test_report_is_still_a_command_and_lines_a_subcommand(tmp_path: Path) -> None:
    runner, _ = _runner(tmp_path)
    report = runner.invoke(cli, ["report", "--format", "json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["rows"] == []
    missing = runner.invoke(cli, ["report", "lines", "--job", "projects/1/locations/l/batchPredictionJobs/2"])
    assert missing.exit_code == 1
    assert "Error: Job projects/1/locations/l/batchPredictionJobs/2 not found." in missing.output
