"""A ledger built by real jobs: created through the proxy, run by the emulator, metered by the proxy's poller.

Each job's figures are then computed here, independently, from its output rows (tests/support/expected.py and
plain sums), and its create time is moved to a chosen date so that day, ISO week, month and range boundaries are
exercised (moving it also exercises the rollup's update trigger). Reports are checked against `expected_report`,
a plain Python grouping of those per-job figures.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import Job
from proxy.money import format_usd
from proxy.tenancy.keys import create_key
from proxy.tenancy.team_admin import set_team
from tests.metering.completion.conftest import JOBS, submit, text_line, wait_metered
from tests.providers.vertex.conftest import LOCATION, Proxied, start_proxied
from tests.support.expected import expected_for, output_rows

PROJECT = "meter-project"
UNPRICED_MODEL = "gemini-9.9-custom"
CACHE = f"projects/{PROJECT}/locations/us-central1/cachedContents/123"
TOKEN_KINDS = ("prompt", "cached", "candidates", "thoughts", "tool_use_prompt")


@dataclass
class JobFacts:
    """One job as the test knows it: what it asked for, and figures summed from its output rows."""

    name: str
    team: str
    key: str
    model: str
    state: str
    created: datetime
    cost_status: str
    cost_pico: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    succeeded: int = 0
    failed: int = 0

    def key_value(self, by: str) -> str | None:
        day = self.created.date()
        year, week, _ = day.isocalendar()
        return {"job": self.name, "team": self.team, "key": self.key, "model": self.model, "project": PROJECT,
                "location": LOCATION, "state": self.state, "day": day.isoformat(), "week": f"{year}-W{week:02d}",
                "month": f"{day.year}-{day.month:02d}"}[by]


@dataclass
class Ledger:
    """The running proxy and emulator, the keys, the metered jobs and the one job still in flight."""

    env: Proxied
    jobs: list[JobFacts]
    in_flight: str

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.env.sessions


def _figures(facts: JobFacts, rows: list[dict[str, Any]]) -> None:
    """Tokens and lines straight from the rows (plain sums of usageMetadata); cost from expected_for."""
    for row in rows:
        if row.get("status"):
            facts.failed += 1
            continue
        facts.succeeded += 1
        usage = row.get("response", {}).get("usageMetadata", {})
        for kind, field_name in zip(TOKEN_KINDS, ("promptTokenCount", "cachedContentTokenCount",
                                                  "candidatesTokenCount", "thoughtsTokenCount",
                                                  "toolUsePromptTokenCount"), strict=True):
            facts.tokens[kind] += int(usage.get(field_name, 0))
    if facts.cost_status == "priced":
        facts.cost_pico = expected_for(rows, facts.model).cost_pico


def _bigquery_body(name: str) -> dict[str, Any]:
    return {"displayName": name, "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": "bq://bq-project.d.in"}},
            "outputConfig": {"predictionsFormat": "bigquery",
                             "bigqueryDestination": {"outputUri": "bq://bq-project.d"}}}


# (who, model, lines, faults, state, cost status, create time): chosen around ISO-week, month and year edges.
def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


PLAN: list[tuple[str, str, int, dict[str, Any] | None, str, str, datetime]] = [
    ("team-a", "gemini-2.5-flash", 3, None, "SUCCEEDED", "priced", _t("2025-12-29 00:00:00")),      # Mon, 2026-W01
    ("team-a-2", "gemini-2.5-pro", 2, None, "SUCCEEDED", "priced", _t("2026-03-29 23:59:59.999999")),  # Sun, W13
    ("team-a", UNPRICED_MODEL, 2, None, "SUCCEEDED", "unpriced", _t("2026-03-30 00:00:00")),       # Mon, W14
    ("team-b", "gemini-2.5-flash-lite", 6, {"failed_row_share": 0.5}, "SUCCEEDED", "priced",
     _t("2026-12-31 12:00:00")),                                                                  # Thu, 2026-W53
    ("team-b", "gemini-2.0-flash", 2, None, "SUCCEEDED", "priced", _t("2027-01-01 00:00:00")),    # Fri, 2026-W53
    ("team-b", "gemini-2.5-flash", 4, {"cached": True}, "SUCCEEDED", "priced", _t("2027-01-04 08:30:00")),  # 2027-W01
    ("team-b", "gemini-2.5-flash", 1, {"fail_jobs": True}, "FAILED", "priced", _t("2026-11-03 10:00:00")),
    ("team-a", "bigquery", 0, None, "FAILED", "unmeterable", _t("2026-11-02 10:00:00")),
]
IN_FLIGHT_CREATED = _t("2026-11-04 09:00:00")
TEAM_OF = {"team-a": "team-a", "team-a-2": "team-a", "team-b": "team-b", "admin": "platform"}


def _submit_bigquery(env: Proxied, who: str) -> str:
    with env.client(who) as client:
        reply = client.post(JOBS, json=_bigquery_body("bq-job"))
    assert reply.status_code == 200, reply.text
    return str(reply.json()["name"])


@pytest.fixture(scope="package")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    saved = dict(os.environ)
    stack, proxy, sessions = start_proxied(tmp_path_factory.mktemp("reports"), extra_models=(UNPRICED_MODEL,),
                                           poller_enabled=True, poll_interval=0.2)
    env = Proxied(stack, proxy, sessions)
    try:
        with sessions.begin() as session:
            for who, team in TEAM_OF.items():
                key, secret = create_key(session, team=team, name=who, admin=who == "admin")
                env.keys[who], env.key_ids[who] = secret, key.id
            set_team(session, actor="test", team="team-a", bq_datasets=["bq-project.d"])
        names = []
        for who, model, lines, faults, *_ in PLAN:
            if model == "bigquery":
                names.append(_submit_bigquery(env, who))
            else:
                options = dict(faults or {})  # "cached": the lines name a cached content; the rest are faults
                request = {"cachedContent": CACHE} if options.pop("cached", False) else {}
                names.append(submit(env, model, [text_line(f"Question {i} about the costs of batch prediction?",
                                                           **request) for i in range(lines)],
                                    who=who, faults=options or None))
        jobs = []
        for name, (who, model, _, _, state, status, created) in zip(names, PLAN, strict=True):
            job = wait_metered(env, name)
            facts = JobFacts(name=name, team=TEAM_OF[who],
                             key=env.key_ids[who], model="gemini-2.5-flash" if model == "bigquery" else model,
                             state=f"JOB_STATE_{state}", created=created, cost_status=status)
            if job.output_directory and status != "unmeterable":
                _figures(facts, output_rows(stack.storage_client(), job.output_directory))
            jobs.append(facts)
        # One job that stays in flight: the emulator keeps the pace a job was created with.
        assert stack._state is not None
        stack._state.job_seconds = 600
        in_flight = submit(env, "gemini-2.5-flash", [text_line("Still running?")], who="team-a")
        stack._state.job_seconds = 0.6
        with sessions.begin() as session:
            for facts in jobs:
                session.execute(update(Job).where(Job.name == facts.name).values(create_time=facts.created))
            session.execute(update(Job).where(Job.name == in_flight).values(create_time=IN_FLIGHT_CREATED))
        yield Ledger(env, jobs, in_flight)
    finally:
        proxy.stop()
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


IN_FLIGHT = JobFacts(name="(the job in flight)", team="team-a", key="", model="gemini-2.5-flash",
                     state="JOB_STATE_RUNNING", created=IN_FLIGHT_CREATED, cost_status="")


def expected_report(jobs: Iterable[JobFacts], by: tuple[str, ...],
                    keep: Callable[[JobFacts], bool] = lambda _: True,
                    in_flight: Iterable[JobFacts] = (IN_FLIGHT,)) -> dict[str, Any]:
    """The JSON document docs/design.md specifies, computed by plain grouping of the per-job facts; `in_flight_jobs`
    counts the jobs of `in_flight` that `keep` keeps (they are in no row)."""
    groups: dict[tuple[str | None, ...], list[JobFacts]] = defaultdict(list)
    for job in jobs:
        if keep(job):
            groups[tuple(job.key_value(k) for k in by)].append(job)

    def figures(members: list[JobFacts]) -> dict[str, Any]:
        return {
            "jobs": len(members),
            "cost_usd": format_usd(sum(j.cost_pico for j in members if j.cost_status == "priced")),
            "tokens": {kind: sum(j.tokens[kind] for j in members) for kind in TOKEN_KINDS},
            "lines": {"succeeded": sum(j.succeeded for j in members), "failed": sum(j.failed for j in members),
                      "malformed": 0},
            "unpriced_jobs": sum(j.cost_status == "unpriced" for j in members),
            "unmeterable_jobs": sum(j.cost_status == "unmeterable" for j in members),
        }

    rows = [{**dict(zip(by, key, strict=True)), **figures(members)}
            for key, members in sorted(groups.items(), key=lambda item: [(v is not None, v or "") for v in item[0]])]
    return {"rows": rows, "totals": figures([j for members in groups.values() for j in members]),
            "in_flight_jobs": sum(1 for job in in_flight if keep(job))}
