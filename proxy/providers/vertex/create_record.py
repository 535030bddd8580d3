"""Recording a job Vertex just created, before the caller hears of it: shared by the native door's create and the
OpenAI door's batches.

The row is committed before the reply leaves. If that fails, the job may still be in the ledger (reconciliation
adopted it first from its labels): then all is well; else the caller gets an error naming the job, which
reconciliation will adopt, so that nobody creates it twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session

from proxy.errors import Internal
from proxy.ledger import jobs as ledger
from proxy.ledger.models import Job
from proxy.services import Services
from proxy.tenancy.keys import Principal
from proxy.tenancy.project_names import ProjectNames

log = logging.getLogger(__name__)


async def record_create(services: Services, *, data: bytes, request: Mapping[str, Any], principal: Principal,
                        api_version: str, project: str, location: str, project_names: ProjectNames | None = None,
                        link: Callable[[Session, Job], object] | None = None, provider: str = "vertex",
                        deployment: str | None = None) -> str | None:
    """The created job's name once its row is committed (with `link` run in the same transaction); None when the
    reply is not JSON (reconciliation will adopt the job); Internal when the row cannot be written."""
    try:
        reply = json.loads(data)
    except ValueError:
        log.error("create reply was not JSON; the job cannot be recorded until reconciliation")
        return None

    def write() -> str:
        with services.sessions.begin() as session:
            job = ledger.record_created(session, reply=reply, request=request, principal=principal,
                                        api_version=api_version, project=project, location=location,
                                        provider=provider, deployment=deployment)
            if link is not None:
                link(session, job)
            name = job.name
        services.jobs.remember(job)
        if project_names is not None and provider == "vertex":
            project_names.learn(job.project, job.project_number)
        return name

    try:
        return await to_thread.run_sync(write)
    except Exception as exc:
        name = reply.get("name") if isinstance(reply, dict) else None
        if isinstance(name, str) and await _recorded(services, name):
            return name  # reconciliation adopted it first: the job is in the ledger all the same
        log.exception("job %s was created upstream but could not be recorded", name)
        raise Internal(f"The job {name} was created but the proxy could not record it; it will be adopted by "
                       "reconciliation. Do not create it again.") from exc


async def _recorded(services: Services, name: str) -> bool:
    try:
        return name in await to_thread.run_sync(services.jobs.load_names, [name])
    except Exception:  # the database is down: the job is not recorded as far as anyone can tell
        return False
