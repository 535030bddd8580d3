"""`vbp budgets set|list|remove` and `vbp estimate FILE [--model M]`: the CLI parses options and calls the same
functions as the admin API (`proxy.budgets.store`) and the create path (`proxy.budgets.estimate`,
`proxy.budgets.local_file`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets import store
from proxy.budgets.estimate import EstimateError
from proxy.budgets.local_file import FORMATS, estimate_local
from proxy.catalog.load import CatalogError
from proxy.clock import utcnow


def _sessions() -> sessionmaker[Session]:
    """Sessions on the environment's ledger, after `vbp`'s check that it exists and is migrated."""
    from proxy.cli import _sessions as ledger_sessions

    return ledger_sessions()


@click.group()
def budgets() -> None:
    """Dollar budgets per team or key, checked before a batch reaches the upstream."""


@budgets.command("set")
@click.option("--team", required=True, help="The team the budget covers (all its keys, unless --key).")
@click.option("--key", "key_id", default=None, help="Only this key of the team.")
@click.option("--usd", required=True, help="The limit in USD, e.g. 250 or 12.50.")
@click.option("--period", type=click.Choice(store.PERIODS), default="month", show_default=True,
              help="Per UTC calendar month, or in total.")
@click.option("--allow-unestimated/--refuse-unestimated", default=None,
              help="Whether jobs the proxy cannot estimate (BigQuery input, unpriced models) may still run under "
                   "it. Default: refused (a new budget), unchanged (an existing one).")
@click.option("--json", "as_json", is_flag=True, help="Print the budget as JSON.")
def budgets_set(team: str, key_id: str | None, usd: str, period: str, allow_unestimated: bool | None,
                as_json: bool) -> None:
    """Create or replace a budget."""
    sessions = _sessions()
    try:
        with sessions.begin() as session:
            row = store.set_budget(session, actor="cli", team=team, key_id=key_id, limit_pico=store.usd_to_pico(usd),
                                   period=period, allow_unestimated=allow_unestimated, now=utcnow())
            view = store.status(session, row, now=utcnow()).to_json()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _print([view], as_json, single=True)


@budgets.command("list")
@click.option("--team", default=None, help="Only this team's budgets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def budgets_list(team: str | None, as_json: bool) -> None:
    """Every budget with its limit, spent (metered), reserved (in flight) and remaining."""
    with _sessions()() as session:
        views = [status.to_json() for status in store.list_budgets(session, now=utcnow(), team=team)]
    _print(views, as_json)


@budgets.command("remove")
@click.option("--team", required=True)
@click.option("--key", "key_id", default=None, help="The key's budget instead of the team's.")
def budgets_remove(team: str, key_id: str | None) -> None:
    """Remove a budget (reservations already held stay until their jobs are metered)."""
    with _sessions().begin() as session:
        if not store.remove_budget(session, team=team, key_id=key_id):
            raise click.ClickException(f"no budget for {'key ' + key_id + ' of ' if key_id else ''}team {team}")
    click.echo(f"removed the budget of {'key ' + key_id + ' of ' if key_id else ''}team {team}")


def _print(views: list[dict[str, object]], as_json: bool, *, single: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(views[0] if single else {"budgets": views}, indent=2))
        return
    click.echo(f"{'team':<16} {'key':<18} {'period':<6} {'limit':>14} {'spent':>14} {'reserved':>14} "
               f"{'remaining':>14}")
    for v in views:
        click.echo(f"{v['team']!s:<16} {v['key_id'] or '-'!s:<18} {v['period']!s:<6} {v['limit_usd']!s:>14} "
                   f"{v['spent_usd']!s:>14} {v['reserved_usd']!s:>14} {v['remaining_usd']!s:>14}")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", default=None,
              help="The model the batch would run on, e.g. gemini-2.5-flash (a Vertex input: required; an OpenAI "
                   "batch file names its own).")
@click.option("--format", "file_format", type=click.Choice(FORMATS), default=None,
              help="Native Vertex lines, or an OpenAI-format batch file as the OpenAI door takes it. Default: told "
                   "by the first line.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(file: Path, model: str | None, file_format: str | None, as_json: bool) -> None:
    """Estimate a local batch input (JSONL) without running it: the cost range low (input) - high."""
    from proxy.budgets.admission import BudgetGate
    from proxy.catalog.load import load_catalog
    from proxy.cli import _settings

    settings = _settings()
    gate = BudgetGate(settings, None)  # type: ignore[arg-type]  # no ledger: pricing only
    try:
        catalog = load_catalog(settings.models_file) if settings.models_file else None
        figures = estimate_local(file, gate, settings, catalog, model=model, file_format=file_format).to_json()
    except (EstimateError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    click.echo(f"{figures['model']}: {figures['lines']} lines, {figures['input_tokens']} input tokens, at most "
               f"{figures['max_output_tokens']} output tokens")
    click.echo(f"cost: {figures['cost_usd']['low']} - {figures['cost_usd']['high']} USD")
