"""What a key may do: its scopes (projects, locations, models, operations) checked before any upstream call.

An empty scope list allows anything. Scopes bind admin keys too: `admin` widens whose jobs a key sees, not where
it may go. The operation, project and location are checked before the request body is read; the model once the
create body is parsed.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from proxy.errors import PermissionDenied
from proxy.tenancy.keys import Principal

# list and get are both reads
_SCOPE_OF = {"create": "create", "list": "read", "get": "read", "cancel": "cancel", "delete": "delete"}


def check_scope(principal: Principal, *, operation: str, projects: tuple[str, ...], location: str | None) -> None:
    """Raise PermissionDenied unless the key's scopes allow this call.

    `projects` holds every name the call's project goes by (alias, id, number), so a key scoped to any of them
    works with the others. `location` None: the call's location is decided later (a pool's create), and checked
    then.
    """
    if principal.operations and _SCOPE_OF[operation] not in principal.operations:
        raise PermissionDenied(f"This key may not {operation} batch prediction jobs.")
    if principal.projects and not set(projects) & set(principal.projects):
        raise PermissionDenied(f"This key may not use project {projects[0]!r}.")
    if location is not None and principal.locations and location not in principal.locations:
        raise PermissionDenied(f"This key may not use location {location!r}.")


def model_place(model: str) -> tuple[str | None, str | None]:
    """The project and location a model path names (`projects/P/locations/L/...`), or (None, None)."""
    parts = model.strip().split("/")
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "locations":
        return parts[1], parts[3]
    return None, None


def check_model(principal: Principal, *, model: str | None, model_projects: tuple[str, ...] = (),
                model_location: str | None = None) -> None:
    """Raise PermissionDenied unless a create's model is in scope.

    `model` is the bare model id (None when the body names none the proxy can read); `model_projects` are the
    names of the project a model path such as `projects/P/locations/L/publishers/...` carries, which must be in
    the key's projects too, as must `model_location` be in its locations.
    """
    if principal.models:
        if model is None:
            raise PermissionDenied("This key may only create jobs for models matching "
                                   f"{', '.join(principal.models)}; the request names no model.")
        if not any(fnmatchcase(model, p) for p in principal.models):
            raise PermissionDenied(f"This key may not use model {model!r}.")
    if model_projects and principal.projects and not set(model_projects) & set(principal.projects):
        raise PermissionDenied(f"This key may not use models of project {model_projects[0]!r}.")
    if model_location is not None and principal.locations and model_location not in principal.locations:
        raise PermissionDenied(f"This key may not use models of location {model_location!r}.")
