"""`vbp models`: the model catalog (VBP_MODELS_FILE) and the pools (VBP_PROJECT_POOLS) with what placement holds on
each deployment now — unfinished jobs, queued tokens, headroom, health, placements — or why the catalog cannot be
loaded (the same message `vbp serve` stops with)."""

from __future__ import annotations

import json

import click

from proxy.catalog.catalog import Catalog
from proxy.catalog.load import CatalogError, load_catalog
from proxy.settings import Settings

COLUMNS = ("NAME", "PROVIDER", "MODEL", "WHERE", "WEIGHT", "QUOTA", "UNFINISHED", "QUEUED", "HEADROOM", "HEALTH",
           "PLACED")


def catalog_of(settings: Settings) -> Catalog | None:
    """The catalog VBP_MODELS_FILE names (None when unset); CatalogError names the line and field of a problem."""
    return load_catalog(settings.models_file) if settings.models_file else None


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """The model catalog and pools: each deployment's place, quota, queued tokens, headroom, health and placements."""
    from proxy.cli import _sessions, _settings
    from proxy.placement.state import placement_state

    settings = _settings()
    try:
        catalog = catalog_of(settings)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if catalog is None and not settings.project_pools:
        click.echo(f"no model catalog (VBP_MODELS_FILE is unset): the OpenAI door runs Gemini models on Vertex in "
                   f"{settings.default_project or 'the credentials project'}/{settings.default_location}", err=True)
        if as_json:
            click.echo("[]")
        return
    with _sessions()() as session:
        states = placement_state(session, catalog, pools=settings.project_pools, aliases=settings.project_aliases)
    if as_json:
        click.echo(json.dumps([state.to_json() for state in states], indent=2))
        return
    rows = [[str(cell) for cell in (
        s.name, s.provider, s.model or "-", s.where, s.weight, "-" if s.quota is None else s.quota,
        s.unfinished_jobs, s.queued_tokens, "-" if s.headroom is None else s.headroom, s.health,
        s.placements.get("placed", 0))] for s in states]
    widths = [max(len(cells[i]) for cells in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    for cells in [list(COLUMNS), *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
