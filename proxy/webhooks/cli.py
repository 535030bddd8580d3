"""`vbp webhooks`: admins register teams' endpoints and read the delivery log (the same functions as the API)."""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from proxy.webhooks.outbox import EVENT_TYPES


def _sessions(settings: Any = None) -> Any:
    """Sessions on the ledger (checked and named on stderr first, unless `settings` were already checked)."""
    from proxy.cli import _sessions as ledger_sessions  # imported here: proxy.cli registers this group

    return ledger_sessions(settings)


@click.group()
def webhooks() -> None:
    """Completion webhooks: teams' endpoints, and the log of their deliveries."""


@webhooks.command("add")
@click.option("--team", required=True, help="The team whose events the endpoint receives.")
@click.option("--url", required=True, help="https URL to POST each event to (checked: no private addresses).")
@click.option("--event", "events", multiple=True, type=click.Choice(EVENT_TYPES),
              help="An event type to send; repeat. Default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoint and its secret as JSON.")
def webhooks_add(team: str, url: str, events: tuple[str, ...], as_json: bool) -> None:
    """Register an endpoint; prints its signing secret, shown this once."""
    from proxy.cli import _ledger
    from proxy.webhooks.delivery import url_policy
    from proxy.webhooks.registration import add_endpoint, endpoint_view

    settings = _ledger()
    with _sessions(settings).begin() as session:
        try:
            endpoint, secret = add_endpoint(session, team=team, url=url, events=events,
                                            actor=f"cli:{getpass.getuser()}", policy=url_policy(settings))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        view = endpoint_view(endpoint)
    if as_json:
        click.echo(json.dumps({**view, "secret": secret}))
        return
    click.echo(f"webhook {view['id']} for team {team}: {url} ({', '.join(view['events']) or 'all events'})")
    click.echo(f"signing secret (shown once): {secret}")


@webhooks.command("list")
@click.option("--team", default=None, help="Only this team's endpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def webhooks_list(team: str | None, as_json: bool) -> None:
    """The endpoints that receive events."""
    from proxy.webhooks.registration import endpoint_view, list_endpoints

    with _sessions()() as session:
        views = [endpoint_view(endpoint) for endpoint in list_endpoints(session, team=team)]
    if as_json:
        click.echo(json.dumps(views, indent=2))
        return
    for view in views:
        click.echo(f"{view['id']}  {view['team']:<16} {view['url']}  ({', '.join(view['events']) or 'all events'})")
    if not views:
        click.echo("no webhooks")


@webhooks.command("remove")
@click.argument("endpoint_id")
def webhooks_remove(endpoint_id: str) -> None:
    """Stop sending to an endpoint (its pending deliveries are marked failed)."""
    from proxy.webhooks.registration import remove_endpoint

    with _sessions().begin() as session:
        if not remove_endpoint(session, endpoint_id=endpoint_id):
            raise click.ClickException(f"no webhook {endpoint_id}")
    click.echo(f"removed {endpoint_id}")


@webhooks.command("deliveries")
@click.option("--failed", is_flag=True, help="Only the deliveries that gave up.")
@click.option("--team", default=None, help="Only this team's deliveries.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def webhooks_deliveries(failed: bool, team: str | None, limit: int, as_json: bool) -> None:
    """The delivery log, newest first: state, tries, last answer."""
    from proxy.webhooks.registration import list_deliveries

    with _sessions()() as session:
        rows = list_deliveries(session, failed_only=failed, team=team, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        job = (row["data"] or {}).get("job", "")
        last = row["last_error"] or (f"answered {row['last_status']}" if row["last_status"] else "not tried yet")
        click.echo(f"{row['id']:>6} {row['state']:<9} {row['type']:<14} {row['webhook_id']} {row['url']} "
                   f"tries={row['attempts']} {job}  ({last})")
    if not rows:
        click.echo("no deliveries")


@webhooks.command("redeliver")
@click.argument("delivery_id")
def webhooks_redeliver(delivery_id: str) -> None:
    """Send a delivery again now (same webhook-id), with a fresh series of retries."""
    from proxy.webhooks.registration import redeliver

    sessions = _sessions()  # the ledger is checked (and named) before the argument
    if not (delivery_id.isascii() and delivery_id.isdigit()):
        raise click.ClickException(f"{delivery_id!r} is not a delivery id (a whole number)")
    with sessions.begin() as session:
        try:
            view = redeliver(session, delivery_id=int(delivery_id))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if view is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} ({view['webhook_id']}) is pending again")
