"""`vbp models`: the model catalog (VBP_MODELS_FILE) with each deployment's queue and health, or why it cannot
be loaded (the same message `vbp serve` stops with)."""

from __future__ import annotations

import json

import click

from proxy.catalog.catalog import Catalog
from proxy.catalog.load import CatalogError, load_catalog
from proxy.settings import Settings

COLUMNS = ("NAME", "PROVIDER", "MODEL", "WHERE", "WEIGHT", "QUOTA", "UNFINISHED", "QUEUED_TOKENS<=", "HEALTH")


def catalog_of(settings: Settings) -> Catalog | None:
    """The catalog VBP_MODELS_FILE names (None when unset); CatalogError names the line and field of a problem."""
    return load_catalog(settings.models_file) if settings.models_file else None


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """The model catalog: each deployment's provider, model, where it runs, quota, queued work and health."""
    from proxy.catalog.status import deployment_statuses
    from proxy.cli import _sessions, _settings

    settings = _settings()
    try:
        catalog = catalog_of(settings)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if catalog is None:
        click.echo(f"no model catalog (VBP_MODELS_FILE is unset): the OpenAI door runs Gemini models on Vertex in "
                   f"{settings.default_project or 'the credentials project'}/{settings.default_location}", err=True)
        if as_json:
            click.echo("[]")
        return
    with _sessions()() as session:
        statuses = deployment_statuses(session, catalog)
    if as_json:
        click.echo(json.dumps([status.to_json() for status in statuses], indent=2))
        return
    rows = [[str(cell) for cell in (s["name"], s["provider"], s["model"], s["where"], s["weight"],
                                    s["enqueued_token_quota"] if s["enqueued_token_quota"] is not None else "-",
                                    s["unfinished_jobs"], s["queued_tokens_at_most"], s["health"])]
            for s in (status.to_json() for status in statuses)]
    widths = [max(len(cells[i]) for cells in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    for cells in [list(COLUMNS), *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
