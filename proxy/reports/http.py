"""The report routes: `GET /v1/costs` (API key), and `/dashboard` with its sign-in (session cookie).

    GET  /v1/costs?by=team,model&since=YYYY-MM-DD&until=YYYY-MM-DD&team=T&model=M&format=json|csv
    GET  /dashboard[?since=&until=&team=]     the page, or the sign-in form without a valid session
    POST /dashboard/login                      form field `key`: sets the session cookie, 303 to /dashboard
    POST /dashboard/logout                     clears it
    GET  /dashboard/costs.csv?<as /v1/costs>   the CSV export of a signed-in session

A team key sees only its own team (asking for another team is 403); an admin key sees every team. Errors on
`/v1/costs` use Google's envelope. Jobs in range that have no figure yet are counted in the JSON's `in_flight_jobs`
and, for both formats, in the `X-VBP-In-Flight-Jobs` header.
Report answers and pages are reused per caller and query for `VBP_REPORT_CACHE_SECONDS` (see `answer_cache`).

The two form posts refuse to be sent from another site (403): a browser says where a post comes from in
`Sec-Fetch-Site` (only `same-origin` and `none` pass) and `Origin` (it must be this site's own origin), and either
naming another site is enough; a client that sends neither is no browser, and has no cookie to abuse. The session
cookie is HttpOnly, SameSite=Lax, and Secure whenever the request came over TLS (directly, or as a trusted proxy
says).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs

from anyio import to_thread
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy.clock import utcnow
from proxy.errors import InvalidArgument, PermissionDenied, Unauthenticated
from proxy.gateway.accounting import accounted_as
from proxy.gateway.forwarded import request_origin, request_scheme
from proxy.ledger.request_log import record_of
from proxy.reports.answer_cache import AnswerCache
from proxy.reports.dashboard import dashboard_page, default_range, error_page, gather, login_page
from proxy.reports.query import Report, ReportError, ReportFilter, parse_by, parse_moment, run_report
from proxy.reports.render import to_csv, to_document
from proxy.reports.session_cookie import COOKIE_NAME, SessionSigner
from proxy.services import Services
from proxy.tenancy.auth import authenticate
from proxy.tenancy.keys import Principal, hash_secret

DEFAULT_BY = "team,model"
MAX_VALUES = 100  # `team` and `model` may each be given this many times: each is a bound parameter of the query
MAX_DASHBOARD_DAYS = 3660  # the page draws one slot per day, week or month: ten years of them at most
_LOGIN_BODY_LIMIT = 8192
# The pages hold spend figures: never cached, never framed, no script and nothing from elsewhere.
_PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

def report_routes(services: Callable[[], Services | None]) -> list[Route]:
    """The routes, for the app's route list; `services` gives the running app's services."""
    endpoints = ReportEndpoints(services)
    return [
        Route("/v1/costs", accounted_as("costs", endpoints.costs), methods=["GET"]),
        Route("/dashboard", accounted_as("dashboard", endpoints.dashboard), methods=["GET"]),
        Route("/dashboard/login", accounted_as("dashboard_login", endpoints.login), methods=["POST"]),
        Route("/dashboard/logout", accounted_as("dashboard_logout", endpoints.logout), methods=["POST"]),
        Route("/dashboard/costs.csv", accounted_as("dashboard_csv", endpoints.dashboard_csv), methods=["GET"]),
    ]


def report_params(query: QueryParams, principal: Principal) -> tuple[tuple[str, ...], ReportFilter]:
    """The grouping and filter a query asks for, with a team key held to its own team."""
    try:
        by = parse_by(query.getlist("by") or DEFAULT_BY)
        teams = tuple(t for t in query.getlist("team") if t)
        models = tuple(m for m in query.getlist("model") if m)
        if len(teams) > MAX_VALUES or len(models) > MAX_VALUES:
            raise InvalidArgument(f"team and model may each be given at most {MAX_VALUES} times.")
        if not principal.admin:
            if any(t != principal.team for t in teams):
                raise PermissionDenied(f"This key sees only the costs of team {principal.team!r}.")
            teams = (principal.team,)
        return by, ReportFilter(since=parse_moment(query.get("since")), until=parse_moment(query.get("until")),
                                teams=teams, models=models)
    except ReportError as exc:
        raise InvalidArgument(str(exc)) from None


IN_FLIGHT_HEADER = "x-vbp-in-flight-jobs"  # jobs in range without a figure yet: not in the rows (see render)


@dataclass(frozen=True)
class Rendered:
    """A report answer as sent: kept whole by the answer cache, so a hit costs no query and no encoding."""

    body: bytes
    media_type: str
    headers: dict[str, str]

    def response(self) -> Response:
        return Response(self.body, media_type=self.media_type, headers=self.headers)


def render_report(report: Report, fmt: str) -> Rendered:
    """The JSON document or the CSV of a report, with the in-flight count in its header."""
    headers = {"cache-control": "no-store", IN_FLIGHT_HEADER: str(report.in_flight)}
    if fmt == "csv":
        return Rendered(to_csv(report).encode(), "text/csv; charset=utf-8",
                        {"content-disposition": 'attachment; filename="costs.csv"', **headers})
    return Rendered(bytes(JSONResponse(to_document(report)).body), "application/json", headers)


class ReportEndpoints:
    """Handlers bound to the running app's services (known only once its lifespan has started)."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self._services = services
        self._signer: SessionSigner | None = None
        self._answers: AnswerCache[Rendered] | None = None

    @property
    def services(self) -> Services:
        services = self._services()
        assert services is not None, "the lifespan has not run"
        return services

    @property
    def signer(self) -> SessionSigner:
        if self._signer is None:
            settings = self.services.settings
            self._signer = SessionSigner.from_setting(settings.session_secret, settings.session_seconds)
        return self._signer

    @property
    def answers(self) -> AnswerCache[Rendered]:
        """Answers reused for VBP_REPORT_CACHE_SECONDS (see `answer_cache`)."""
        if self._answers is None:
            self._answers = AnswerCache(self.services.settings.report_cache_seconds)
        return self._answers

    async def _report(self, by: tuple[str, ...], chosen: ReportFilter, fmt: str) -> Response:
        """The report's answer; a team key's filter names its team, so the key holds the caller's view."""
        def query() -> Rendered:
            with self.services.sessions() as session:
                return render_report(run_report(session, by=by, filter=chosen), fmt)
        return (await self.answers.get(("costs", by, chosen, fmt), query)).response()

    async def costs(self, request: Request) -> Response:
        """GET /v1/costs: the report document (JSON), or CSV with format=csv."""
        principal = await authenticate(self.services, request.headers.items())
        record_of(request.scope).key_id, record_of(request.scope).team = principal.key_id, principal.team
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise InvalidArgument(f"format {fmt!r} is not json or csv")
        return await self._report(*report_params(request.query_params, principal), fmt)

    async def _session_principal(self, request: Request) -> Principal | None:
        claim = self.signer.read(request.cookies.get(COOKIE_NAME))
        if claim is None:
            return None

        def lookup() -> Principal | None:
            with self.services.sessions() as session:
                return self.signer.principal(session, claim, now=utcnow())
        return await to_thread.run_sync(lookup)

    async def dashboard(self, request: Request) -> Response:
        """GET /dashboard: the page for a signed-in key, else the sign-in form."""
        principal = await self._session_principal(request)
        if principal is None:
            return HTMLResponse(login_page(), headers=_PAGE_HEADERS)
        since, until = default_range(utcnow().date())
        try:
            query = request.query_params
            since = date.fromisoformat(query["since"]) if query.get("since") else since
            until = date.fromisoformat(query["until"]) if query.get("until") else until
            if since >= until:
                raise ValueError("the range is empty: 'from' must come before 'until'")
            if (until - since).days > MAX_DASHBOARD_DAYS:
                raise ValueError(f"the page shows at most {MAX_DASHBOARD_DAYS} days at once")
        except ValueError as exc:
            return HTMLResponse(error_page(f"Bad range: {str(exc)[:200]}."), status_code=400, headers=_PAGE_HEADERS)
        team = request.query_params.get("team") or None

        def build() -> Rendered:
            with self.services.sessions() as session:
                view = gather(session, principal=principal, since=since, until=until, team=team)
            return Rendered(dashboard_page(view).encode(), "text/html; charset=utf-8", _PAGE_HEADERS)
        # The page names the signed-in key, so its answer is kept per key (a team key's view is its own team's).
        return (await self.answers.get(("dashboard", principal, since, until, team), build)).response()

    def _cross_site(self, request: Request) -> Response | None:
        """A 403 page for a form posted from another site; None for a post from this one (or from no browser)."""
        fetch_site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        own = request_origin(request.scope, self.services.settings.trusted_proxies)
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            reason = f"the browser says it comes from another site (Sec-Fetch-Site: {fetch_site})"
        # `Origin: null` is what a browser sends for this very page too (its Referrer-Policy is no-referrer): it
        # stands only where Sec-Fetch-Site, which a page cannot forge, vouches for the post.
        elif origin is not None and origin.lower() != own and not (origin == "null" and fetch_site is not None):
            reason = "its Origin is not this site" + (
                " (behind a TLS terminator, list it in VBP_TRUSTED_PROXIES)"
                if origin.lower().startswith("https://") and own.startswith("http://") else "")
        else:
            return None
        return HTMLResponse(error_page(f"This form was refused: {reason}."), status_code=403, headers=_PAGE_HEADERS)

    def _secure(self, request: Request) -> bool:
        return request_scheme(request.scope, self.services.settings.trusted_proxies) == "https"

    async def login(self, request: Request) -> Response:
        """POST /dashboard/login: check the key, set the session cookie, go to the page."""
        refused = self._cross_site(request)
        if refused is not None:
            return refused
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _LOGIN_BODY_LIMIT:
                return HTMLResponse(login_page("The form is too large."), status_code=413, headers=_PAGE_HEADERS)
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        secret = (fields.get("key") or [""])[0].strip()
        try:
            principal = await authenticate(self.services, [("x-goog-api-key", secret)])
        except Unauthenticated:
            return HTMLResponse(login_page("That key is not valid: unknown, revoked or expired."), status_code=401,
                                headers=_PAGE_HEADERS)
        response = RedirectResponse("/dashboard", status_code=303, headers=_PAGE_HEADERS)
        response.set_cookie(COOKIE_NAME, self.signer.issue(principal.key_id, hash_secret(secret)),
                            max_age=int(self.signer.max_age), path="/dashboard", httponly=True, samesite="lax",
                            secure=self._secure(request))
        return response

    async def logout(self, request: Request) -> Response:
        """POST /dashboard/logout: forget the session cookie."""
        refused = self._cross_site(request)
        if refused is not None:
            return refused
        response = RedirectResponse("/dashboard", status_code=303, headers=_PAGE_HEADERS)
        response.delete_cookie(COOKIE_NAME, path="/dashboard", httponly=True, samesite="lax",
                               secure=self._secure(request))
        return response

    async def dashboard_csv(self, request: Request) -> Response:
        """GET /dashboard/costs.csv: the CSV export for a signed-in session (same parameters as /v1/costs)."""
        principal = await self._session_principal(request)
        if principal is None:
            return RedirectResponse("/dashboard", status_code=303)
        record_of(request.scope).key_id, record_of(request.scope).team = principal.key_id, principal.team
        return await self._report(*report_params(request.query_params, principal), "csv")
