"""The soak's open-loop load: requests are started at the times a fixed rate sets, whatever the replies take, so a
slow proxy meets the same load instead of a politer one; each latency runs from the scheduled time.

The mix (shares of all requests, in MIX): gets of the team's own jobs, filtered lists, creates of small jobs, cancels
of young jobs, gets of another team's jobs (404), the cost report and the dashboard. It follows what batch clients
do: a job is created once and then polled until it ends (the Vertex SDK and most scripts poll a job's state every
few seconds to a minute, for jobs of minutes to hours), so gets dominate and a create is about one call in a hundred;
lists come from people and tools looking for their jobs; another team's job is asked for by mistake; cost reports
and dashboard pages are a person or a finance script now and then. Reports and pages are still a few percent (more
than real use) so that every operation stays exercised; at 200 requests/s the 1% of creates is still 2 jobs a
second, 7,200 an hour, each one checked in the ledger at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from bench.soak.stack import Stack, Team
from proxy.reports.session_cookie import COOKIE_NAME

MIX: dict[str, int] = {"get": 72, "list": 12, "create": 1, "cancel": 1, "foreign_get": 6, "costs": 4,
                       "dashboard": 4}
EXPECTED: dict[str, frozenset[int]] = {
    "get": frozenset({200}), "list": frozenset({200}), "create": frozenset({200}),
    "cancel": frozenset({200, 400}),  # 400 FAILED_PRECONDITION: the job ended before the cancel arrived
    "foreign_get": frozenset({404}), "costs": frozenset({200}), "dashboard": frozenset({200}),
}
NATIVE = frozenset({"get", "list", "create", "cancel", "foreign_get"})  # the operations that reach the upstream
GOOGLE_STATUS = {400: "FAILED_PRECONDITION", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
LIST_FILTERS = ('state="JOB_STATE_SUCCEEDED"', 'display_name:"soak-*"', 'labels.soak="yes"',
                'state!="JOB_STATE_RUNNING" AND labels.soak:*')


@dataclass
class Call:
    """One request's outcome: when it was scheduled (seconds from the start), what came back, how long it took."""

    op: str
    at: float
    status: int  # 0: no reply (connection error or client timeout)
    seconds: float
    error: str = ""  # the Google status name of an error reply, or the exception of a failed call


@dataclass
class Load:
    """Everything the load did and saw."""

    calls: list[Call] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # job name -> team, for every create answered 200
    create_attempts: list[tuple[str, str, int]] = field(default_factory=list)  # (team, displayName, status)
    late: int = 0  # requests started more than 100 ms after their time (the generator itself fell behind)

    def by_op(self) -> dict[str, list[Call]]:
        grouped: dict[str, list[Call]] = defaultdict(list)
        for call in self.calls:
            grouped[call.op].append(call)
        return grouped


class Traffic:
    """The mix, over one aiohttp session, with each team's known jobs and dashboard cookie."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession, load: Load, started: float) -> None:
        self.stack = stack
        self.session = session
        self.load = load
        self.started = started
        self.jobs: dict[str, list[str]] = {team.name: [] for team in stack.teams}
        self.cookies: dict[str, str] = {}
        self.numbers = iter(range(1, 10**9))
        ops, weights = zip(*MIX.items(), strict=True)
        self.pick: Callable[[], str] = lambda: random.choices(ops, weights)[0]

    async def prepare(self) -> None:
        """Seed each team with jobs (gets need some) and sign each team in to the dashboard."""
        for team in self.stack.teams:
            for _ in range(3):
                await self._create(team, time.monotonic())
            form = aiohttp.FormData({"key": team.key})
            async with self.session.post(f"{self.stack.proxy_url}/dashboard/login", data=form,
                                         allow_redirects=False) as reply:
                if reply.status != 303:
                    raise RuntimeError(f"dashboard sign-in of {team.name}: {reply.status} {await reply.text()}")
                self.cookies[team.name] = reply.cookies[COOKIE_NAME].value
        self.load.calls.clear()

    async def one(self, op: str, at: float) -> None:
        team = random.choice(self.stack.teams)
        try:
            if op == "create":
                await self._create(team, at)
                return
            status, error = await self._request(op, team)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = 0, type(exc).__name__
        self._record(op, at, status, error)

    def _record(self, op: str, at: float, status: int, error: str) -> None:
        self.load.calls.append(Call(op, at - self.started, status, time.monotonic() - at, error))

    def _headers(self, team: Team) -> dict[str, str]:
        return {"Authorization": f"Bearer {team.key}"}

    async def _create(self, team: Team, at: float) -> None:
        body = team.create_body(next(self.numbers))
        status, error = 0, ""
        try:
            async with self.session.post(self.stack.proxy_url + team.collection, json=body,
                                         headers=self._headers(team)) as reply:
                status, data = reply.status, await reply.read()
            if status == 200:
                name = json.loads(data)["name"]
                self.load.created[name] = team.name
                self.jobs[team.name].append(name)
            else:
                error = _google_status(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        self.load.create_attempts.append((team.name, body["displayName"], status))
        self._record("create", at, status, error)

    async def _request(self, op: str, team: Team) -> tuple[int, str]:
        base = self.stack.proxy_url
        method, url, headers, params = "GET", "", self._headers(team), None
        if op == "get":
            url = f"{base}/v1/{random.choice(self.jobs[team.name][-300:])}"
        elif op == "foreign_get":
            other = random.choice([t for t in self.stack.teams if t is not team])
            url = f"{base}/v1/{random.choice(self.jobs[other.name][-300:])}"
        elif op == "list":
            query = random.choice(LIST_FILTERS)
            if random.random() < 0.25:
                since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                query = f'create_time>"{since}"'
            url, params = base + team.collection, {"filter": query, "pageSize": "50"}
        elif op == "cancel":
            method, url = "POST", f"{base}/v1/{self.jobs[team.name][-1]}:cancel"
        elif op == "costs":
            url, params = f"{base}/v1/costs", {"by": random.choice(["team,model", "day", "job"])}
        elif op == "dashboard":
            url, headers = f"{base}/dashboard", {"Cookie": f"{COOKIE_NAME}={self.cookies[team.name]}"}
        async with self.session.request(method, url, headers=headers, params=params) as reply:
            data = await reply.read()
            return reply.status, "" if reply.status < 400 else _google_status(data)


def _google_status(data: bytes) -> str:
    """The `error.status` of a Google envelope; `not-an-envelope` for anything else."""
    try:
        error = json.loads(data)["error"]
        return str(error["status"]) if isinstance(error["code"], int) else "not-an-envelope"
    except (ValueError, KeyError, TypeError):
        return "not-an-envelope"


async def open_loop(traffic: Traffic, *, rate: float, seconds: float) -> None:
    """Start request n at `started + n / rate` until `seconds` have passed, never waiting for replies."""
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while True:
        at = traffic.started + n / rate
        if at - traffic.started >= seconds:
            break
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.1:
            traffic.load.late += 1
        task = asyncio.create_task(traffic.one(traffic.pick(), at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered) + 0.5)) - 1))]


def status_counts(calls: list[Call]) -> Counter[int]:
    return Counter(call.status for call in calls)
