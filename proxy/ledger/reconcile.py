"""Reconciliation: adopting into the ledger the jobs that carry the proxy's labels upstream but are missing from it.

A create goes to the provider first and into the ledger second; if the proxy dies (or the database refuses the write)
in between, the job exists with the `vbp-team` and `vbp-key` labels the proxy stamped and nowhere else. A pass
lists, in every project/location the proxy serves, the jobs with a `vbp-team` label, and adopts those the ledger
does not have (`origin = "reconcile"`). The owner comes from the labels: the `vbp-key` label must name a key of
this ledger whose team is the `vbp-team` label; anything else (a job of another deployment sharing the project, a
hand-made label) is reported and left alone. An adopted job is its team's job like any other: the team's keys
get, cancel, delete and list it; other teams get 404. A job of the OpenAI door also carries the `vbp-batch`
label: the adopted job is linked to that batch (written before the job was created), of the same team only.

OpenAI and Azure batches (`Reconciler(services, provider="openai" | "azure")`, one per provider of the catalog) are
listed per catalog deployment; their metadata carries the same labels, and a batch adopted there is linked to its
door batch the same way.

"The projects the proxy serves": the `project/location` pairs of VBP_RECONCILE_PROJECTS (aliases allowed) plus
every pair the ledger already holds a job in. The very first job of a pair missing from both is only found once
the pair is configured.

A job younger than VBP_RECONCILE_MIN_AGE seconds is left alone, as its create may still be committing; should
a pass adopt one anyway (a skewed clock), the create's own write finds the row and succeeds.

Each pass also settles the budget reservations (`proxy.budgets.reservation`): a labelled job it adopts binds
the reservation its create held (the `vbp-reservation` label); a reservation still waiting for a job after
VBP_RESERVATION_GRACE seconds, whose job a complete listing of its pair does not show, is released (a listing
the provider broke off, `ListingIncomplete`, releases nothing: the job may be on the pages it did not give).

Passes run in `vbp reconcile` and every VBP_RECONCILE_INTERVAL seconds inside `vbp serve`; replicas may run them
at once (a duplicate insert fails on the unique job name and is skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import anyio
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from proxy.budgets import reservation as reservations
from proxy.clock import utcnow
from proxy.ledger import jobs as ledger
from proxy.ledger.batch_links import link_batch
from proxy.ledger.models import ApiKey, BudgetReservation, Job
from proxy.providers.base import ListingIncomplete, UpstreamJob
from proxy.providers.registry import DEFAULT_PROVIDER, get_provider
from proxy.services import Services
from proxy.tenancy.keys import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adoption:
    """What a pass did with one labelled job the ledger lacked: adopted, young, foreign (unknown key) or mismatch."""

    name: str
    result: str
    team: str
    key_id: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "result": self.result, "team": self.team, "key_id": self.key_id}


def reservation_label(item: UpstreamJob) -> str:
    """The budget reservation a listed job's create held (its `vbp-reservation` label), or ''."""
    labels = item.resource.get("labels")
    value = labels.get(reservations.LABEL) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else ""


ID_CHUNK = 500  # job ids per look-up: one parameter short of SQLite's oldest limit of 999 with the location


def id_chunks(ids: list[str]) -> Iterator[list[str]]:
    """The ids in look-ups of exactly ID_CHUNK, the last padded with its own last id (IN ignores repeats).

    The statement's text is then the same on every pass. With one IN of every listed id, each pass whose listing
    had grown made a new statement, which SQLite keeps prepared in the statement cache of the pooled connection
    that ran it (128 per connection, about 0.2 KB per parameter: 240 KB for 1,200 jobs), so the process grew
    with the number of jobs times the number of passes until the caches filled.
    """
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start:start + ID_CHUNK]
        yield chunk + [chunk[-1]] * (ID_CHUNK - len(chunk))


def catalog_providers(services: Services) -> list[str]:
    """The providers to reconcile: Vertex always, and each other provider the model catalog names."""
    catalog = services.catalog
    named = {d.provider for d in catalog.deployments} if catalog else set()
    return [DEFAULT_PROVIDER, *sorted(named - {DEFAULT_PROVIDER})]


class Reconciler:
    """One per process and provider; `min_age` and `projects` default to the settings (for OpenAI and Azure: the
    catalog's deployments of the provider)."""

    def __init__(self, services: Services, *, min_age: float | None = None,
                 projects: Iterable[tuple[str, str]] | None = None, provider: str = DEFAULT_PROVIDER) -> None:
        settings = services.settings
        self.services = services
        self.provider = get_provider(provider, settings)
        self.min_age = settings.reconcile_min_age if min_age is None else min_age
        if provider != DEFAULT_PROVIDER and projects is None:
            # OpenAI and Azure are listed per catalog deployment: (deployment name, provider name) pairs.
            catalog = services.catalog
            deployments = catalog.deployments if catalog else ()
            projects = [(d.name, d.provider) for d in deployments if d.provider == provider]
        configured = tuple(settings.reconcile_projects if projects is None else projects)
        self.configured = tuple((settings.project_aliases.get(p, p), loc) for p, loc in configured)
        # Why the last pass could not list some pairs in full (so `vbp reconcile` can say so and fail).
        self.incomplete: list[str] = []

    async def run(self) -> None:
        """A pass every VBP_RECONCILE_INTERVAL seconds until cancelled; 0 turns it off.

        The first pass waits one interval too: replicas restarted together do not all list at once, and a
        process that lives shorter than that (a test, a one-off) never lists at all.
        """
        interval = self.services.settings.reconcile_interval
        if interval <= 0:
            return
        while True:
            await anyio.sleep(interval)
            try:
                adopted = [a for a in await self.pass_once() if a.result == "adopted"]
                if adopted:
                    log.warning("reconciliation adopted %d job(s): %s", len(adopted),
                                ", ".join(a.name for a in adopted))
            except Exception:  # a bad pass must not end the loop
                log.exception("reconciliation pass failed")

    async def pass_once(self) -> list[Adoption]:
        """List every served pair upstream, adopt what the ledger lacks, then settle the budget reservations."""
        outcomes: list[Adoption] = []
        listed: set[tuple[str, str]] = set()
        labelled: set[str] = set()
        self.incomplete = []
        for project, location in await to_thread.run_sync(self.served):
            try:
                jobs = await self.provider.list_labelled_jobs(self.services.upstream, project=project,
                                                              location=location)
                listed.add((project, location))
            except ListingIncomplete as exc:  # adopt what it showed; release nothing on its word
                log.warning("reconciliation: %s; no reservation released there this pass", exc)
                self.incomplete.append(f"{project}/{location}: {exc}")
                jobs = exc.jobs
            labelled |= {reservation_label(item) for item in jobs}
            if jobs:
                outcomes += await to_thread.run_sync(self.adopt, project, location, jobs)
        await to_thread.run_sync(self.settle_reservations, listed, labelled)
        return outcomes

    def settle_reservations(self, listed: set[tuple[str, str]], labelled: set[str]) -> int:
        """Release the reservations of creates that died before recording a job (older than
        VBP_RESERVATION_GRACE, in a pair listed this pass, and carried by no job there), and settle those whose
        job was metered meanwhile (blocking). Returns how many changed."""
        now = utcnow()
        with self.services.sessions.begin() as session:
            changed = reservations.settle_metered(session, now=now)
            for held in reservations.stale_holds(session, now=now, grace=self.services.settings.reservation_grace):
                if (held.project, held.location) in listed and held.id not in labelled:
                    reservations.release(session, reservation_id=held.id, now=now,
                                         note="no job was recorded or found upstream for this create")
                    log.warning("released budget reservation %s of team %s: its create left no job", held.id,
                                held.team)
                    changed += 1
        return changed

    def served(self) -> list[tuple[str, str]]:
        """The configured pairs, then those of the ledger's jobs and of reservations awaiting a job (blocking)."""
        with self.services.sessions() as session:
            known = list(session.execute(select(Job.project, Job.location).where(
                Job.provider == self.provider.name).distinct()).all())
            known += session.execute(select(BudgetReservation.project, BudgetReservation.location).where(
                BudgetReservation.state == "held").distinct()).all()
        pairs = dict.fromkeys([*self.configured, *((str(p), str(loc)) for p, loc in known)])
        return [(p, loc) for p, loc in pairs if self.provider.served(p, loc)]

    def adopt(self, project: str, location: str, jobs: list[UpstreamJob]) -> list[Adoption]:
        """Adopt the listed jobs the ledger does not have (blocking); one transaction per job."""
        missing = self._missing(location, jobs)
        young_after = utcnow() - timedelta(seconds=self.min_age)
        outcomes: list[Adoption] = []
        for item in missing:
            if item.created is not None and item.created > young_after:
                outcomes.append(Adoption(item.name, "young", item.team_label, item.key_id))
                continue
            outcomes.append(self._adopt_one(item, project, location))
        return [o for o in outcomes if o.result]

    def _missing(self, location: str, jobs: list[UpstreamJob]) -> list[UpstreamJob]:
        ids = [item.job_id for item in jobs]
        with self.services.sessions() as session:
            rows = [row for chunk in id_chunks(ids) for row in session.execute(
                select(Job.name, Job.job_id, Job.project, Job.project_number).where(
                    Job.location == location, Job.job_id.in_(chunk))).all()]
        known_names = {row[0] for row in rows}
        known = {(row[1], p) for row in rows for p in (row[2], row[3]) if p}
        return [item for item in jobs
                if item.location == location and item.name not in known_names
                and (item.job_id, item.project) not in known]

    def _adopt_one(self, listed: UpstreamJob, project: str, location: str) -> Adoption:
        item, team, key_id = dict(listed.resource), listed.team_label, listed.key_id
        try:
            with self.services.sessions.begin() as session:
                key = session.get(ApiKey, key_id) if key_id else None
                if key is None:
                    log.warning("job %s names key %r, which this ledger does not know: not adopted", listed.name,
                                key_id)
                    return Adoption(listed.name, "foreign", team, key_id)
                if self.provider.label_value(key.team) != team:
                    log.warning("job %s names team %r but its key %s is team %r's: not adopted", listed.name,
                                team, key.id, key.team)
                    return Adoption(listed.name, "mismatch", team, key_id)
                job = ledger.record_created(session, reply=item, request=item,
                                            principal=Principal(key_id=key.id, team=key.team),
                                            api_version=listed.api_version, project=project, location=location,
                                            origin="reconcile", provider=self.provider.name,
                                            deployment=listed.deployment or None)
                if listed.batch_id:
                    link_batch(session, job=job, batch_id=listed.batch_id)
                if reservation_label(listed):
                    reservations.bind(session, reservation_id=reservation_label(listed), job=job, now=utcnow())
                owner = job.team
        except IntegrityError:
            return Adoption(listed.name, "", team, key_id)  # another replica or the create itself got there first
        self.services.jobs.remember(job)
        return Adoption(listed.name, "adopted", owner, key_id)
