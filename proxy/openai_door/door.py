"""What every route of the OpenAI door needs: the services, VBP_FILES_BUCKET, the caller, where batches run."""

from __future__ import annotations

from collections.abc import Callable

from anyio import to_thread
from starlette.requests import Request

from proxy.catalog.catalog import file_provider
from proxy.errors import Unavailable
from proxy.ledger.request_log import record_of
from proxy.openai_door.bucket import FilesBucket
from proxy.placement.placer import Placer
from proxy.services import Services
from proxy.tenancy.auth import authenticate
from proxy.tenancy.keys import Principal
from proxy.tenancy.project_names import ProjectNames
from proxy.tenancy.team_policy import TeamPolicy


class Door:
    """One per app; made on the first call, once the lifespan has built the services."""

    def __init__(self, services: Services, *, bucket_factory: Callable[[str], FilesBucket] = FilesBucket) -> None:
        self.services = services
        settings = services.settings
        self._bucket = bucket_factory(settings.files_bucket) if settings.files_bucket else None
        self.project_names = ProjectNames(services.sessions, settings.project_aliases)
        self.placer = Placer(services.sessions)  # where each OpenAI/Azure batch runs (`placement_seam`)
        self._project: str | None = None

    @property
    def bucket(self) -> FilesBucket:
        """VBP_FILES_BUCKET, or 503 naming the setting: without it the door is off."""
        if self._bucket is None:
            raise Unavailable("The OpenAI door is off: the proxy has no VBP_FILES_BUCKET (the Cloud Storage bucket "
                              "for its files and batch outputs). An admin sets it and restarts the proxy.")
        return self._bucket

    async def caller(self, request: Request, route: str) -> Principal:
        """The caller's principal (401 without a live key); the call is named on the request's record."""
        record = record_of(request.scope)
        record.route = route
        principal = await authenticate(self.services, request.headers.items())
        record.key_id, record.team = principal.key_id, principal.team
        return principal

    async def team_policy(self, team: str) -> TeamPolicy:
        teams = self.services.teams
        policy = teams.cached(team)
        return policy if policy is not None else await to_thread.run_sync(teams.load, team)

    def provider_of(self, model: str) -> str:
        """Where a file of `model` runs: its first catalog deployment's provider; `vertex` when the catalog does not
        serve it (or there is none), as before the catalog."""
        return file_provider(self.services.catalog, model)

    async def place(self) -> tuple[str, str]:
        """(project, location) the door's batches run in: VBP_DEFAULT_PROJECT, else the credentials' project."""
        settings = self.services.settings
        if self._project is None:
            project = settings.default_project
            if project is None:
                project = await to_thread.run_sync(_credentials_project)
            if not project:
                raise Unavailable("The OpenAI door does not know which project to run batches in: set "
                                  "VBP_DEFAULT_PROJECT (the Google credentials name none).")
            self._project = settings.project_aliases.get(project, project)
        return self._project, settings.default_location

    async def project_names_of(self, project: str) -> tuple[str, ...]:
        names = self.project_names.cached(project)
        return names if names is not None else await to_thread.run_sync(self.project_names.load, project)


def _credentials_project() -> str | None:
    import google.auth
    import google.auth.exceptions

    from proxy.upstream.google_credentials import CLOUD_PLATFORM

    try:
        return google.auth.default(scopes=[CLOUD_PLATFORM])[1]
    except google.auth.exceptions.DefaultCredentialsError:
        return None
