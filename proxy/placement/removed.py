"""Sticky follow-ups: a catalog deployment that still holds unfinished batches may not leave the catalog.

Retrieve, cancel and content of a batch always go to the deployment recorded on its job (`jobs.deployment`),
whatever the catalog's order or weights; but its URL and credentials come from the catalog, so removing it would
strand those batches (no poll, no cancel, no output, no cost). `vbp serve` refuses to start on such a catalog
and names the deployments and how many batches each still holds; put them back until the batches end.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from proxy.catalog.catalog import Catalog
from proxy.ledger.models import Job


def unfinished_jobs(session: Session) -> dict[str, int]:
    """`{deployment: jobs on it not seen to end}` over the ledger (native-door jobs, on no deployment, left out)."""
    rows = session.execute(select(Job.deployment, func.count()).where(
        Job.deployment.is_not(None), Job.metering_state.is_(None), Job.deleted_at.is_(None))
        .group_by(Job.deployment))
    return {str(name): int(count) for name, count in rows}


def stranded(session: Session, catalog: Catalog) -> dict[str, int]:
    """`{deployment: unfinished jobs}` of deployments in the ledger that the catalog no longer has."""
    return {name: count for name, count in unfinished_jobs(session).items() if catalog.named(name) is None}


def stranded_message(found: dict[str, int], source: str) -> str:
    """The refusal `vbp serve` prints."""
    names = ", ".join(f"{name} ({count} unfinished batch{'es' if count != 1 else ''})"
                      for name, count in sorted(found.items()))
    return (f"the model catalog ({source or 'VBP_MODELS_FILE'}) no longer has deployments that still hold "
            f"unfinished batches: {names}. Put them back until their batches end: retrieve, cancel, output and "
            "metering reach a batch only through the deployment it runs on.")
