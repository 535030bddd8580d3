"""The end of a soak: every job the emulator holds is in the ledger once, with the team that created it, and
metered once; no create made two jobs. Read from the ledger's tables and from the emulator's own job list."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from sqlalchemy import func, select

from bench.soak.load import Load
from bench.soak.stack import LOCATION, Stack
from proxy.ledger.engine import make_engine, make_sessionmaker
from proxy.ledger.models import Job, JobMetering
from proxy.providers.vertex.states import TERMINAL_STATES, parse_state

ENDED = ("metered", "unmeterable")


@dataclass
class Upstream:
    """The emulator's jobs: name -> (displayName, vbp-team label, ended)."""

    jobs: dict[str, tuple[str, str, bool]] = field(default_factory=dict)


@dataclass
class Ledger:
    jobs: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)  # name -> (team, metering, origin)
    meterings: Counter[str] = field(default_factory=Counter)  # name -> rows of job_metering


def upstream_jobs(stack: Stack) -> Upstream:
    """Every job of the soak's projects, listed straight from the emulator with the platform's credentials."""
    credentials = service_account.Credentials.from_service_account_file(
        stack.env["GOOGLE_APPLICATION_CREDENTIALS"], scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    found = Upstream()
    with httpx.Client(base_url=stack.emulator_url, timeout=60,
                      headers={"Authorization": f"Bearer {credentials.token}"}) as client:
        for team in stack.teams:
            token = ""
            while True:
                params = {"pageSize": "1000", **({"pageToken": token} if token else {})}
                reply = client.get(f"/v1/projects/{team.project}/locations/{LOCATION}/batchPredictionJobs",
                                   params=params)
                reply.raise_for_status()
                body: dict[str, Any] = reply.json()
                for job in body.get("batchPredictionJobs", []):
                    found.jobs[job["name"]] = (job["displayName"], job.get("labels", {}).get("vbp-team", ""),
                                               parse_state(job["state"]) in TERMINAL_STATES)
                token = body.get("nextPageToken", "")
                if not token:
                    break
    return found


def ledger_jobs(stack: Stack) -> Ledger:
    engine = make_engine(stack.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            found = Ledger()
            for name, team, state, origin in session.execute(
                    select(Job.name, Job.team, Job.metering_state, Job.origin)):
                found.jobs[name] = (team, state, origin)
            for name, rows in session.execute(select(Job.name, func.count(JobMetering.id))
                                              .join(JobMetering, JobMetering.job_pk == Job.id).group_by(Job.name)):
                found.meterings[name] = rows
            return found
    finally:
        engine.dispose()


def settled(upstream: Upstream, ledger: Ledger) -> bool:
    """Every upstream job ended, adopted and metered."""
    return all(ended for _, _, ended in upstream.jobs.values()) and set(upstream.jobs) <= set(ledger.jobs) and \
        all(state in ENDED for _, state, _ in ledger.jobs.values())


def drain(stack: Stack, *, timeout: float) -> tuple[Upstream, Ledger, float]:
    """Wait (up to `timeout` s) for the poller and the reconciler to catch up; the last views and the wait."""
    started = time.monotonic()
    while True:
        upstream, ledger = upstream_jobs(stack), ledger_jobs(stack)
        waited = time.monotonic() - started
        if settled(upstream, ledger) or waited > timeout:
            return upstream, ledger, waited
        time.sleep(2)


def findings(load: Load, upstream: Upstream, ledger: Ledger) -> list[tuple[str, int]]:
    """(what, how many) for each way a job could be lost, doubled, misowned or mis-metered: all must be 0."""
    display_names = Counter(display for display, _, _ in upstream.jobs.values())
    return [
        ("creates that made two upstream jobs (same displayName)", sum(1 for n in display_names.values() if n > 1)),
        ("upstream jobs missing from the ledger", len(set(upstream.jobs) - set(ledger.jobs))),
        ("ledger jobs the upstream does not have", len(set(ledger.jobs) - set(upstream.jobs))),
        ("creates answered 200 missing from the ledger", len(set(load.created) - set(ledger.jobs))),
        ("jobs in the ledger under another team than their creator's",
         sum(1 for name, team in load.created.items() if name in ledger.jobs and ledger.jobs[name][0] != team)
         + sum(1 for name, (_, label, _) in upstream.jobs.items()
               if name in ledger.jobs and ledger.jobs[name][0] != label)),
        ("ledger jobs not metered", sum(1 for _, state, _ in ledger.jobs.values() if state not in ENDED)),
        ("ledger jobs metered other than once", sum(1 for name in ledger.jobs if ledger.meterings[name] != 1)),
    ]
