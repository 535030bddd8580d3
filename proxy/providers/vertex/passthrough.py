"""The five batchPredictionJobs calls: match, authenticate, check scopes and ownership, forward, record.

One method per operation (create, list, get, cancel, delete). Request ids, accounting and error replies are the
gateway's (`proxy.app`'s middleware stack); this module enriches the request's record and raises `ApiError`s.

A raw ASGI handler rather than a framework route: this is the hot path, and it needs the raw path and
headers anyway (matching happens on the still-encoded target).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session

from proxy.budgets import reservation as reservations
from proxy.budgets.reservation import LABEL as RESERVATION_LABEL
from proxy.clock import utcnow
from proxy.errors import InvalidArgument, NotFound, PayloadTooLarge
from proxy.json_body import parse_json_body
from proxy.ledger import jobs as ledger
from proxy.ledger.job_index import JobRef
from proxy.ledger.request_log import RequestRecord, record_of
from proxy.placement import claims as placements
from proxy.placement.placer import Placer
from proxy.providers.vertex.create_body import body_model, prepare_create_body, rewrite_aliases
from proxy.providers.vertex.create_record import record_create
from proxy.providers.vertex.job_fields import normalise_job
from proxy.providers.vertex.paths import JobRoute, match
from proxy.providers.vertex.pool_create import allowed_members, create_in_pool, pool_tokens
from proxy.providers.vertex.query import encode_query, parse_query
from proxy.providers.vertex.resources import google_base_url, model_id
from proxy.providers.vertex.states import advances, parse_state
from proxy.providers.vertex.team_filter import team_filter
from proxy.services import Services
from proxy.tenancy.auth import authenticate
from proxy.tenancy.data_boundaries import check_job_locations
from proxy.tenancy.keys import Principal
from proxy.tenancy.project_names import ProjectNames
from proxy.tenancy.scopes import check_model, check_scope, model_place
from proxy.tenancy.team_policy import TeamPolicy
from proxy.upstream import UpstreamResponse
from proxy.upstream.headers import request_headers, response_headers

log = logging.getLogger("proxy.providers.vertex.passthrough")

Scope = dict[str, Any]
_RECORD_CAP = 8 * 1024 * 1024  # replies larger than this are passed on but not read for states


@dataclass(slots=True)
class Call:
    """One matched call on its way through: what every operation's handler needs."""

    scope: Scope
    receive: Any
    send: Any
    route: JobRoute
    headers: list[tuple[str, str]]
    principal: Principal
    projects: tuple[str, ...]  # the names the path's project goes by (alias, id, number)
    record: RequestRecord


class Passthrough:
    """ASGI app for `/{v1,v1beta1}/projects/...`; errors are raised for the gateway to answer in Google's envelope.

    Every call is matched, authenticated and scope-checked here (from the path alone, before any body is read),
    then handled by its operation's method.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.project_names = ProjectNames(services.sessions, services.settings.project_aliases,
                                          pools=services.settings.project_pools)
        self.placer = Placer(services.sessions)
        self._operations: dict[str, Callable[[Call], Awaitable[None]]] = {
            "create": self._create, "list": self._list, "get": self._get, "cancel": self._cancel,
            "delete": self._delete,
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        record = record_of(scope)
        if scope.get("vbp.absolute_form"):
            raise InvalidArgument("Absolute-form request targets are not accepted.")
        route = match(scope["method"], scope.get("raw_path") or scope["path"].encode())
        record.route, record.api_version = route.operation, route.api_version
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        principal = await self._authenticate(headers)
        record.key_id, record.team = principal.key_id, principal.team
        # Scopes first (from the path alone, before the body is read), then ownership: another team's job and a
        # missing one get the same answer whatever the key's scopes.
        projects = await self._project_names(route.project)
        pool = self.services.settings.project_pools.get(route.project)
        if pool is not None and route.operation != "create":
            raise InvalidArgument(f"{route.project} is a pool of projects (VBP_PROJECT_POOLS): address a job by the "
                                  "name its create answered, in one of "
                                  f"{', '.join(f'{p}/{loc}' for p, loc in pool)}.")
        pooled = pool is not None
        # a pool's create: the pool decides the location (its members are checked against the key's scopes)
        check_scope(principal, operation=route.operation, projects=projects,
                    location=None if pooled else route.location)
        await self._operations[route.operation](Call(scope, receive, send, route, headers, principal, projects,
                                                     record))

    async def _create(self, call: Call) -> None:
        """Check the job against the key and the team's policy, forward it, and record it before replying."""
        principal, route = call.principal, call.route
        policy = await self._team_policy(principal.team)
        job = normalise_job(await self._read_json(call.receive), allowed=policy.allowed_fields)
        create_body = prepare_create_body(job, principal=principal, aliases=self.services.settings.project_aliases)
        model_path = body_model(create_body) or ""
        model_project, model_location = model_place(model_path)
        check_model(principal, model=model_id(model_path),
                    model_projects=await self._project_names(model_project)
                    if model_project and principal.projects else (),
                    model_location=model_location)
        check_job_locations(create_body, policy)
        query = self._query(call)
        reservation_id, tokens = await self._reserve(create_body, principal, route)
        # From here a crash leaves the reservation `held`: reconciliation binds it to the job (found by its label)
        # or releases it once no job carries it.
        placement_id = None
        if route.project in self.services.settings.project_pools:
            reply, route, placement_id = await self._create_in_pool(call, query, create_body, tokens)
        else:
            reply = await self._forward(call, query, json.dumps(create_body).encode())
        data = await reply.read()
        if reply.status == 200:
            call.record.job_name = await self._record_create(data, create_body, principal, route,
                                                             self._real_project(route), reservation_id,
                                                             placement_id)
        elif placement_id is not None and reply.status != 504:  # a 504's job may exist: its claim stays held
            await to_thread.run_sync(self.placer.release, placement_id, f"the upstream refused it ({reply.status})")
        if reply.status != 200 and reservation_id is not None and self.services.budgets is not None:
            await to_thread.run_sync(self.services.budgets.release, reservation_id,
                                     f"the upstream refused the create ({reply.status})")
        await send_reply(call.send, reply.status, response_headers(reply.headers), data)

    async def _reserve(self, create_body: dict[str, Any], principal: Principal,
                       route: JobRoute) -> tuple[str | None, int | None]:
        """Estimate the job and hold it against the key's budgets (refusing it if they cannot take it); the
        reservation's id is stamped on the job as a label, so that reconciliation can find the job it paid for.
        Also the job's queued tokens (placement's figure) when the estimate was made."""
        gate = self.services.budgets
        if gate is None:
            return None, None
        admitted = await gate.admit(principal, create_body, project=self._real_project(route),
                                    location=route.location)
        if admitted.reservation_id is not None:
            create_body["labels"][RESERVATION_LABEL] = admitted.reservation_id
        return admitted.reservation_id, admitted.estimate.input_tokens if admitted.estimate is not None else None

    async def _create_in_pool(self, call: Call, query: str, create_body: dict[str, Any],
                              tokens: int | None) -> tuple[UpstreamResponse, JobRoute, str]:
        """Place a pool's create on one of its members (`proxy.providers.vertex.pool_create`); Vertex's reply,
        the member's route, and the placement to bind to the job."""
        settings, route = self.services.settings, call.route
        members = allowed_members(call.principal, route.project, settings.project_pools[route.project],
                                  self.project_names.static)
        if tokens is None:
            tokens = await pool_tokens(self.services.budgets, create_body)

        async def send(project: str, location: str) -> UpstreamResponse:
            member = dataclasses.replace(call, route=dataclasses.replace(route, project=project, location=location))
            body = rewrite_aliases(create_body, {route.project: project})
            return await self._forward(member, query, json.dumps(body).encode())

        created = await create_in_pool(self.placer, pool=route.project, members=members,
                                       aliases=settings.project_aliases, team=call.principal.team,
                                       model=body_model(create_body) or "", tokens=tokens, send=send)
        return created.reply, dataclasses.replace(route, project=created.project, location=created.location), \
            created.claim.placement_id


    async def _list(self, call: Call) -> None:
        """A team key lists only its team's jobs (a filter ANDed onto the caller's); states seen are recorded."""
        reply = await self._forward(call, self._query(call))
        await self._relay_recording_states(call, reply, owned=None)

    async def _get(self, call: Call) -> None:
        query = self._query(call)
        owned = await self._owned_job(call)
        reply = await self._forward(call, query)
        await self._relay_recording_states(call, reply, owned=owned)

    async def _cancel(self, call: Call) -> None:
        query = self._query(call)
        owned = await self._owned_job(call)
        body = await self._read_cancel_body(call.receive)
        await self._act(call, owned, await self._forward(call, query, body))

    async def _delete(self, call: Call) -> None:
        query = self._query(call)
        owned = await self._owned_job(call)
        await self._act(call, owned, await self._forward(call, query))

    def _query(self, call: Call) -> str:
        """The query string to forward. Checked before ownership, so that a refused parameter is refused alike
        whoever's job (if any) the call names."""
        params = parse_query(call.scope.get("query_string", b""), operation=call.route.operation)
        if call.route.operation == "list" and not call.principal.admin:
            params["filter"] = team_filter(params.get("filter"), call.principal.team)
        return encode_query(params)

    def _real_project(self, route: JobRoute) -> str:
        return self.services.settings.project_aliases.get(route.project, route.project)

    async def _forward(self, call: Call, query: str, body: bytes | None = None) -> UpstreamResponse:
        """Send the call on to Vertex (the caller's allowed headers, the request id); the reply's status is noted."""
        route = call.route
        base = self.services.settings.vertex_base_url or google_base_url(route.location)
        url = base.rstrip("/") + route.upstream_path(self._real_project(route)) + (f"?{query}" if query else "")
        reply = await self.services.upstream.send(
            call.scope["method"], url, headers=request_headers(call.headers, request_id=call.record.request_id),
            body=body, idempotent=route.operation in ("get", "list"),
        )
        call.record.upstream_status = reply.status
        return reply

    async def _act(self, call: Call, owned: JobRef | None, reply: UpstreamResponse) -> None:
        """Cancel and delete: small replies, recorded before the caller hears back, so the ledger is never behind."""
        data = await reply.read()
        if reply.status == 200 and owned is not None:
            await to_thread.run_sync(self._record_action, owned, call.route.operation)
        await send_reply(call.send, reply.status, response_headers(reply.headers), data)

    async def _relay_recording_states(self, call: Call, reply: UpstreamResponse, *, owned: JobRef | None) -> None:
        """Get and list: pass the reply on, recording the job states it shows before the caller sees it whole."""
        async def record_states(body: bytes) -> None:
            if reply.status != 200:
                return
            if owned is not None and shows_state(body, owned.state):
                return  # most polls show the state the ledger already holds: nothing to parse or record
            await self._record_states(body, call.route.operation)

        await relay_reply(call.send, reply, response_headers(reply.headers), before_end=record_states)

    async def _authenticate(self, headers: list[tuple[str, str]]) -> Principal:
        return await authenticate(self.services, headers)

    async def _team_policy(self, team: str) -> TeamPolicy:
        teams = self.services.teams
        policy = teams.cached(team)
        return policy if policy is not None else await to_thread.run_sync(teams.load, team)

    async def _project_names(self, project: str) -> tuple[str, ...]:
        names = self.project_names.cached(project)
        if names is None:
            names = await to_thread.run_sync(self.project_names.load, project)
        return names

    async def _owned_job(self, call: Call) -> JobRef | None:
        """The ledger's job behind a get/cancel/delete; another team's job answers exactly like a missing one."""
        route, principal, projects = call.route, call.principal, call.projects
        assert route.job_id is not None
        index = self.services.jobs
        known, ref = index.cached_for(location=route.location, job_id=route.job_id, projects=projects)
        if not known:  # misses are cached too, so a missing job and another team's are answered alike
            ref = await to_thread.run_sync(
                lambda: index.load(location=route.location, job_id=route.job_id or "", projects=projects))
        if not principal.admin and (ref is None or ref.team != principal.team):
            raise NotFound(f"The BatchPredictionJob {route.job_id} does not exist.")
        call.record.job_name = ref.name if ref else None
        return ref

    async def _read_body(self, receive: Any) -> bytes:
        limit = self.services.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in _stream(receive):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_json(self, receive: Any) -> object:
        return parse_json_body(await self._read_body(receive))

    async def _read_cancel_body(self, receive: Any) -> bytes:
        """Vertex's cancel takes an empty body or `{}`; anything else is refused rather than passed on."""
        data = await self._read_body(receive)
        if parse_json_body(data, empty={}) != {}:
            raise InvalidArgument("The cancel request body must be empty or {}.")
        return b"{}" if data.strip() else b""

    async def _record_create(self, data: bytes, request: dict[str, Any], principal: Principal, route: JobRoute,
                             project: str, reservation_id: str | None = None,
                             placement_id: str | None = None) -> str | None:
        """Commit the job row (and bind the budget reservation and the placement to it) before the reply leaves."""
        def bind(session: Session, job: ledger.Job) -> None:
            if reservation_id is not None:
                reservations.bind(session, reservation_id=reservation_id, job=job, now=utcnow())
            if placement_id is not None:
                placements.bind(session, placement_id=placement_id, job_pk=job.id, now=utcnow())

        return await record_create(self.services, data=data, request=request, principal=principal,
                                   api_version=route.api_version, project=project, location=route.location,
                                   project_names=self.project_names, link=bind)

    def _record_action(self, ref: JobRef, operation: str) -> None:
        with self.services.sessions.begin() as session:
            job = session.get(ledger.Job, ref.pk)
            if job is None:
                return
            if operation == "cancel":
                ledger.record_cancel(session, job=job)
            else:
                ledger.record_delete(session, job=job)

    async def _record_states(self, data: bytes, operation: str) -> None:
        """Record states seen in a get or list reply, touching the database only when one advanced."""
        try:
            reply = json.loads(data)
        except ValueError:
            return
        if not isinstance(reply, dict):
            return
        jobs = reply.get("batchPredictionJobs", []) if operation == "list" else [reply]
        news = []
        for item in jobs if isinstance(jobs, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            seen = parse_state(item.get("state"))
            ref = self.services.jobs.cached_name(item["name"])
            if seen is None or (ref is not None and not advances(parse_state(ref.state), seen)):
                continue
            news.append(item)
        if news:
            await to_thread.run_sync(self.services.record_seen, news, operation)


def shows_state(data: bytes, state: str) -> bool:
    """True when the only `"state"` member in a job's JSON is the string `state`, found without parsing.

    Anything unusual (no or several `"state"`, escapes, a numeric enum) answers False, and the reply is parsed.
    A single `"state"` that is not the top-level member means the job shows no state, which records nothing either.
    """
    at = data.find(b'"state"')
    if at < 0 or data.find(b'"state"', at + 7) >= 0 or (b"\\" in data and b"\\u" in data):
        return False
    rest = data[at + 7:at + 7 + 256].lstrip(b" \t\r\n")
    return rest[:1] == b":" and rest[1:].lstrip(b" \t\r\n").startswith(b'"' + state.encode() + b'"')


async def _stream(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _start(status: int, headers: list[tuple[str, str]]) -> dict[str, Any]:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return {"type": "http.response.start", "status": status, "headers": raw}


async def send_reply(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    headers.append(("content-length", str(len(body))))
    await send(_start(status, headers))
    await send({"type": "http.response.body", "body": body})


async def relay_reply(send: Any, reply: Any, headers: list[tuple[str, str]], *,
                      before_end: Callable[[bytes], Awaitable[None]]) -> None:
    """Pass a get or list reply on, calling `before_end` with its body before the caller sees it whole.

    Replies up to `_RECORD_CAP` (every job and list page in practice) are held until the states they show are
    recorded, so the ledger is never behind what a client has seen; a larger one streams through unread.
    """
    held: list[bytes] = []
    size = 0
    streaming = False
    try:
        async for chunk in reply.aiter_bytes():
            if streaming:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                continue
            held.append(chunk)
            size += len(chunk)
            if size > _RECORD_CAP:
                streaming = True
                await send(_start(reply.status, headers))
                await send({"type": "http.response.body", "body": b"".join(held), "more_body": True})
                held = []
        if streaming:
            await send({"type": "http.response.body", "body": b""})
            return
    finally:
        await reply.aclose()
    body = b"".join(held)
    await before_end(body)
    await send_reply(send, reply.status, headers, body)
