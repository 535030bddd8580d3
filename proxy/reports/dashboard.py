"""The `/dashboard` page for people: plain HTML and an inline SVG, no script, no third-party assets.

It shows, for a range of create days (UTC, [since, until)): spend per day stacked by team, the team budgets
(their current period: limit, spent, reserved, remaining; flagged from 80% used), a table by team and model with a
totals row, the unpriced (and unmeterable) jobs, flagged, with the reason, the jobs that ended with no
output (and why), and the jobs in flight (running, or ended and waiting: why, and when the proxy tries again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from proxy.budgets.store import BudgetStatus
from proxy.clock import utcnow
from proxy.money import format_usd
from proxy.reports import budget_lines
from proxy.reports.chart import legend, spend_chart
from proxy.reports.query import (
    Figures,
    JobLine,
    Report,
    ReportFilter,
    in_flight_count,
    list_jobs,
    list_no_output,
    run_report,
)
from proxy.tenancy.keys import Principal

DEFAULT_DAYS = 30
LIST_LIMIT = 50


@dataclass
class DashboardView:
    """Everything the page shows, gathered in one blocking call."""

    principal: Principal
    since: date
    until: date
    team: str | None
    bucket: str
    buckets: list[str]
    by_bucket: Report
    by_team_model: Report
    by_provider_deployment: Report
    in_flight: list[JobLine] = field(default_factory=list)
    in_flight_total: int = 0
    unpriced: list[JobLine] = field(default_factory=list)
    no_output: list[JobLine] = field(default_factory=list)
    budgets: list[BudgetStatus] = field(default_factory=list)
    now: datetime = field(default_factory=utcnow)


def default_range(today: date) -> tuple[date, date]:
    """The last DEFAULT_DAYS days, today included: [today - 29, tomorrow)."""
    return today - timedelta(days=DEFAULT_DAYS - 1), today + timedelta(days=1)


def bucket_for(since: date, until: date) -> str:
    """Days for up to about three months, ISO weeks up to two years, months beyond."""
    days = (until - since).days
    return "day" if days <= 92 else "week" if days <= 731 else "month"


def bucket_names(since: date, until: date, bucket: str) -> list[str]:
    """Every bucket of [since, until) in order, so that empty days still get a slot."""
    names: list[str] = []
    day = since
    while day < until:
        if bucket == "day":
            name = day.isoformat()
        elif bucket == "week":
            year, week, _ = day.isocalendar()
            name = f"{year}-W{week:02d}"
        else:
            name = f"{day.year}-{day.month:02d}"
        if not names or names[-1] != name:
            names.append(name)
        day += timedelta(days=1)
    return names


def gather(session: Session, *, principal: Principal, since: date, until: date, team: str | None) -> DashboardView:
    """Run the page's queries (blocking). A team key's view is its own team, whatever `team` asks."""
    teams = (principal.team,) if not principal.admin else ((team,) if team else ())
    chosen = ReportFilter(since=datetime.combine(since, time(), UTC), until=datetime.combine(until, time(), UTC),
                          teams=teams)
    bucket = bucket_for(since, until)
    return DashboardView(
        principal=principal, since=since, until=until, team=teams[0] if teams else None, bucket=bucket,
        buckets=bucket_names(since, until, bucket),
        by_bucket=run_report(session, by=(bucket, "team"), filter=chosen),
        by_team_model=run_report(session, by=("team", "model"), filter=chosen),
        by_provider_deployment=run_report(session, by=("provider", "deployment"), filter=chosen),
        in_flight=list_jobs(session, filter=chosen, cost_statuses=[None], limit=LIST_LIMIT),
        in_flight_total=in_flight_count(session, filter=chosen),
        unpriced=list_jobs(session, filter=chosen, cost_statuses=["unpriced", "unmeterable"], limit=LIST_LIMIT),
        no_output=list_no_output(session, filter=chosen, limit=LIST_LIMIT),
        budgets=budget_lines.team_budgets(session, teams=teams, now=utcnow()),
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.who{color:#555;margin-bottom:16px} form.inline{display:inline}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px;margin-top:4px} .card.flag{border-color:#d9822b;background:#fff6ec}
table{border-collapse:collapse;font-size:13px} th,td{border-bottom:1px solid #eee;padding:4px 8px}
th{text-align:left;background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold;border-top:2px solid #999} tr.flag td{background:#fff6ec} td{white-space:nowrap}
.badge{background:#d9822b;color:#fff;border-radius:3px;padding:0 5px;font-size:11px;white-space:nowrap}
.legend{list-style:none;padding:0;display:flex;gap:14px;flex-wrap:wrap;font-size:13px}
.swatch{display:inline-block;width:11px;height:11px;margin-right:5px;border-radius:2px}
.error{color:#b00020} .muted{color:#666;font-size:13px} code{font-size:12px}
.why{white-space:normal;display:inline-block;max-width:480px}
"""


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f"<body>{body}</body></html>")


def login_page(error: str | None = None) -> str:
    """The sign-in form: a key, posted to /dashboard/login."""
    message = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    return _page("Sign in - Vertex Batch Proxy costs", (
        "<h1>Vertex Batch Proxy costs</h1>"
        "<p>Sign in with your proxy API key. Team keys see their team's costs; admin keys see every team.</p>"
        f"{message}"
        '<form method="post" action="/dashboard/login" id="login">'
        '<label for="key">API key</label> '
        '<input type="password" id="key" name="key" autocomplete="off" required size="50"> '
        '<button type="submit">Sign in</button></form>'
    ))


def error_page(message: str) -> str:
    """A short page for a request the dashboard cannot answer (a bad range)."""
    return _page("Vertex Batch Proxy costs", f'<h1>Vertex Batch Proxy costs</h1><p class="error">{escape(message)}</p>'
                 '<p><a href="/dashboard">Back to the dashboard</a></p>')


def _n(value: int) -> str:
    return f'<td class="n">{value:,}</td>'


def _cost_cell(figures: Figures) -> str:
    if figures.jobs and figures.priced_jobs == 0:
        return '<td class="n cost">n/a</td>'  # no job of the group has a price: not $0
    return f'<td class="n cost">{format_usd(figures.cost_pico)}</td>'


def _flags(figures: Figures) -> str:
    badges = []
    if figures.unpriced_jobs:
        badges.append(f'<span class="badge">{figures.unpriced_jobs} unpriced</span>')
    if figures.unmeterable_jobs:
        badges.append(f'<span class="badge">{figures.unmeterable_jobs} unmeterable</span>')
    return " ".join(badges)


def _figure_cells(figures: Figures) -> str:
    return (_n(figures.jobs) + _cost_cell(figures) + _n(figures.prompt) + _n(figures.cached) + _n(figures.candidates)
            + _n(figures.thoughts) + _n(figures.tool_use_prompt) + _n(figures.succeeded) + _n(figures.failed)
            + _n(figures.malformed) + f"<td>{_flags(figures)}</td>")


_HEAD = ("<th>Jobs</th><th>Cost (USD)</th><th>Prompt</th><th>Cached</th><th>Candidates</th><th>Thoughts</th>"
         "<th>Tool-use prompt</th><th>Lines ok</th><th>Lines failed</th><th>Lines malformed</th><th>Flags</th>")


def _group_table(report: Report, *, table_id: str, heads: tuple[str, ...], totals_id: str) -> str:
    """One line per group of a two-key report (each key a column, also in `data-<head>`), then the totals."""
    rows = []
    for row in report.rows:
        keys = [value or "" for value in row.key]
        flag = ' class="flag"' if row.figures.unpriced_jobs or row.figures.unmeterable_jobs else ""
        data = "".join(f' data-{head.lower()}="{escape(value)}"' for head, value in zip(heads, keys, strict=True))
        cells = "".join(f"<td>{escape(value)}</td>" for value in keys)
        rows.append(f"<tr{flag}{data}>{cells}{_figure_cells(row.figures)}</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{11 + len(heads)}" class="muted">No metered jobs in this range.</td></tr>')
    blank = "<td></td>" * (len(heads) - 1)
    total = f'<tr class="total" id="{totals_id}"><td>Total</td>{blank}{_figure_cells(report.totals)}</tr>'
    head = "".join(f"<th>{head}</th>" for head in heads)
    return (f'<table id="{table_id}"><thead><tr>{head}{_HEAD}</tr></thead>'
            f"<tbody>{''.join(rows)}{total}</tbody></table>")


def _budgets_table(budgets: list[BudgetStatus]) -> str:
    """One line per team budget; a budget with 80% or more spent or reserved is flagged (the threshold event's
    mark)."""
    if not budgets:
        return '<p class="muted" id="budgets">No team budget.</p>'
    rows = []
    for status in budgets:
        limit, used = status.budget.limit_pico, status.spent + status.reserved
        share = f"{used * 100 // limit}%" if limit else "-"
        flag = ' class="flag"' if used * 5 >= limit * 4 else ""
        period, *amounts = budget_lines.cells(status)
        rows.append(f'<tr{flag} data-team="{escape(status.budget.team)}"><td>{escape(status.budget.team)}</td>'
                    f"<td>{escape(period)}</td>" + "".join(f'<td class="n">{a}</td>' for a in amounts)
                    + f'<td class="n">{share}</td></tr>')
    return ('<table id="budgets"><thead><tr><th>Team</th><th>Period</th><th>Budget (USD)</th><th>Spent</th>'
            f"<th>Reserved</th><th>Remaining</th><th>Used</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _jobs_table(jobs: list[JobLine], table_id: str, *, extra: tuple[str, ...] = (),
                cells: Callable[[JobLine], tuple[str, ...]] = lambda _: ()) -> str:
    """A list of jobs; `extra` names more columns and `cells` gives their (already escaped) HTML per job."""
    if not jobs:
        return f'<p class="muted" id="{table_id}">None.</p>'
    rows = "".join(
        f"<tr><td><code>{escape(j.name)}</code></td><td>{escape(j.team)}</td><td>{escape(j.model)}</td>"
        f"<td>{escape(j.state.removeprefix('JOB_STATE_'))}</td><td>{j.create_time:%Y-%m-%d %H:%M}</td>"
        + "".join(f"<td>{cell}</td>" for cell in cells(j)) + "</tr>"
        for j in jobs)
    heads = "".join(f"<th>{escape(head)}</th>" for head in extra)
    return (f'<table id="{table_id}"><thead><tr><th>Job</th><th>Team</th><th>Model</th><th>State</th>'
            f"<th>Created (UTC)</th>{heads}</tr></thead><tbody>{rows}</tbody></table>")


def _status_cells(job: JobLine) -> tuple[str, ...]:
    return (f'<span class="badge">{escape(job.cost_status or "")}</span>', *_reason_cells(job))


def _reason_cells(job: JobLine) -> tuple[str, ...]:
    return (f'<span class="why">{escape(job.note or "")}</span>',)


def _progress_cells(now: datetime) -> Callable[[JobLine], tuple[str, ...]]:
    def cells(job: JobLine) -> tuple[str, ...]:
        return (escape(job.progress.kind), f'<span class="why">{escape(job.progress.reason())}</span>',
                escape(job.progress.next_time(now)))
    return cells


def _card(label: str, value: str, card_id: str, *, flag: bool = False) -> str:
    return f'<div class="card{" flag" if flag else ""}">{escape(label)}<b id="{card_id}">{escape(value)}</b></div>'


def dashboard_page(view: DashboardView) -> str:
    """The page for a signed-in key."""
    principal, totals = view.principal, view.by_team_model.totals
    key = f"<code>{escape(principal.key_id)}</code>"
    who = (f"admin key {key}: every team" if principal.admin
           else f'team <b id="signed-in-team">{escape(principal.team)}</b> (key {key})')
    teams = sorted({row.key[1] or "" for row in view.by_bucket.rows})
    spend = {(row.key[0] or "", row.key[1] or ""): row.figures.cost_pico for row in view.by_bucket.rows}
    range_text = f"{view.since.isoformat()} to {view.until.isoformat()} (until excluded, UTC)"
    query = {"by": "team,model", "since": view.since.isoformat(), "until": view.until.isoformat()}
    if view.team and principal.admin:
        query["team"] = view.team
    team_input = (f'<label>Team <input name="team" value="{escape(view.team or "")}" size="12"></label> '
                  if principal.admin else "")
    body = (
        "<h1>Vertex Batch Proxy costs</h1>"
        f'<div class="who">Signed in as {who}. '
        '<form class="inline" method="post" action="/dashboard/logout"><button type="submit">Sign out</button>'
        "</form></div>"
        '<form method="get" action="/dashboard" id="range">'
        f'<label>From <input type="date" name="since" value="{view.since.isoformat()}"></label> '
        f'<label>Until (excluded) <input type="date" name="until" value="{view.until.isoformat()}"></label> '
        f'{team_input}<button type="submit">Show</button> '
        f'<a href="/dashboard/costs.csv?{escape(urlencode(query))}">Download CSV</a></form>'
        f'<p class="muted">Jobs created {escape(range_text)}. Cost sums priced jobs only.</p>'
        '<div class="cards">'
        + _card("Spend (USD)", format_usd(totals.cost_pico), "total-cost")
        + _card("Metered jobs", f"{totals.jobs:,}", "total-jobs")
        + _card("Unpriced jobs", f"{totals.unpriced_jobs:,}", "total-unpriced", flag=totals.unpriced_jobs > 0)
        + _card("Unmeterable jobs", f"{totals.unmeterable_jobs:,}", "total-unmeterable",
                flag=totals.unmeterable_jobs > 0)
        + _card("In flight", f"{view.in_flight_total:,}", "total-in-flight")
        + "</div>"
        f"<h2>Spend per {view.bucket}, by team</h2>"
        + spend_chart(view.buckets, teams, spend, caption=f"Spend per {view.bucket} by team, {range_text}")
        + legend(teams)
        + "<h2>Budgets</h2>"
        '<p class="muted">Each team budget in its current period, as of now (not the range above): spent is the '
        "metered cost of the jobs created in it, reserved what running creates hold.</p>"
        + _budgets_table(view.budgets)
        + "<h2>By team and model</h2>" + _group_table(view.by_team_model, table_id="by-team-model",
                                                         heads=("Team", "Model"), totals_id="totals-row")
        + "<h2>By provider and deployment</h2>"
        '<p class="muted">Where the jobs ran: the upstream, and the model catalog\'s deployment (empty for the '
        "native door's jobs, which name their project and location instead).</p>"
        + _group_table(view.by_provider_deployment, table_id="by-provider-deployment",
                       heads=("Provider", "Deployment"), totals_id="provider-totals-row")
        + f"<h2>Unpriced and unmeterable jobs ({totals.unpriced_jobs + totals.unmeterable_jobs:,})</h2>"
        '<p class="muted">Their tokens are counted, their cost is not: add the model\'s price to the pricing '
        "table and run <code>vbp reprice</code>.</p>"
        + _jobs_table(view.unpriced, "unpriced-jobs", extra=("Status", "Reason"), cells=_status_cells)
        + f"<h2>Ended with no output ({len(view.no_output):,}{'+' if len(view.no_output) >= LIST_LIMIT else ''})</h2>"
        '<p class="muted">They ended (failed, cancelled, expired) before writing any output: counted above with 0 '
        "lines and nothing billed.</p>"
        + _jobs_table(view.no_output, "no-output-jobs", extra=("Reason",), cells=_reason_cells)
        + f"<h2>Jobs in flight ({view.in_flight_total:,})</h2>"
        '<p class="muted">Not metered yet (running, or ended and waiting to be metered): not in the figures above. '
        "<code>vbp meter --job NAME</code> checks one now and says what it finds.</p>"
        + _jobs_table(view.in_flight, "in-flight-jobs", extra=("Now", "Why", "Next"),
                      cells=_progress_cells(view.now))
    )
    return _page("Vertex Batch Proxy costs", body)
