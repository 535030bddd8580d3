"""Reconciliation: adopting into the ledger the jobs that carry the proxy's labels upstream but are missing from it.

A create goes to the provider first and into the ledger second; if the proxy dies (or the database refuses the write)
in between, the job exists with the `vbp-team` and `vbp-key` labels the proxy stamped and nowhere else. A pass
lists, in every project/location the proxy serves, the jobs with a `vbp-team` label, and adopts those the ledger
does not have (`origin = "reconcile"`). The owner comes from the labels: the `vbp-key` label must name a key of
this ledger whose team is the `vbp-team` label; anything else (a job of another deployment sharing the project, a
hand-made label) is reported and left alone. An adopted job is its team's job like any other: the team's keys
get, cancel, delete and list it; other teams get 404. A job of the OpenAI door also carries the `vbp-batch`
label: the adopted job is linked to that batch (written before the job was created), of the same team only.

"The projects the proxy serves": the `project/location` pairs of VBP_RECONCILE_PROJECTS (aliases allowed) plus
every pair the ledger already holds a job in. The very first job of a pair missing from both is only found once
the pair is configured.

A job younger than VBP_RECONCILE_MIN_AGE seconds is left alone, as its create may still be committing; should
a pass adopt one anyway (a skewed clock), the create's own write finds the row and succeeds. Passes run in
`vbp reconcile` and every VBP_RECONCILE_INTERVAL seconds inside `vbp serve`; replicas may run them at once (a
duplicate insert fails on the unique job name and is skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import anyio
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from proxy.clock import utcnow
from proxy.ledger import jobs as ledger
from proxy.ledger.batch_links import link_batch
from proxy.ledger.models import ApiKey, Job
from proxy.providers.base import UpstreamJob
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


class Reconciler:
    """One per process; `min_age` and `projects` default to the settings."""

    def __init__(self, services: Services, *, min_age: float | None = None,
                 projects: Iterable[tuple[str, str]] | None = None, provider: str = DEFAULT_PROVIDER) -> None:
        settings = services.settings
        self.services = services
        self.provider = get_provider(provider, settings)
        self.min_age = settings.reconcile_min_age if min_age is None else min_age
        configured = tuple(settings.reconcile_projects if projects is None else projects)
        self.configured = tuple((settings.project_aliases.get(p, p), loc) for p, loc in configured)

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
        """List every served pair upstream and adopt what the ledger lacks."""
        outcomes: list[Adoption] = []
        for project, location in await to_thread.run_sync(self.served):
            jobs = await self.provider.list_labelled_jobs(self.services.upstream, project=project, location=location)
            if jobs:
                outcomes += await to_thread.run_sync(self.adopt, project, location, jobs)
        return outcomes

    def served(self) -> list[tuple[str, str]]:
        """The configured pairs, then those of the ledger's jobs (blocking)."""
        with self.services.sessions() as session:
            known = session.execute(select(Job.project, Job.location).where(
                Job.provider == self.provider.name).distinct()).all()
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
            rows = session.execute(select(Job.name, Job.job_id, Job.project, Job.project_number).where(
                Job.location == location, Job.job_id.in_(ids))).all() if ids else []
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
                                            origin="reconcile", provider=self.provider.name)
                if listed.batch_id:
                    link_batch(session, job=job, batch_id=listed.batch_id)
                owner = job.team
        except IntegrityError:
            return Adoption(listed.name, "", team, key_id)  # another replica or the create itself got there first
        self.services.jobs.remember(job)
        return Adoption(listed.name, "adopted", owner, key_id)
