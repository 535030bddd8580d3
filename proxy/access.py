"""What a key may do: its scopes (projects, locations, models, operations) checked before any upstream call."""

from __future__ import annotations

from fnmatch import fnmatchcase

from proxy.errors import PermissionDenied
from proxy.keys import Principal

# list and get are both reads
_SCOPE_OF = {"create": "create", "list": "read", "get": "read", "cancel": "cancel", "delete": "delete"}


def check_scope(principal: Principal, *, operation: str, projects: tuple[str, ...], location: str,
                model: str | None = None) -> None:
    """Raise PermissionDenied unless the key's scopes allow this call. An empty scope list allows anything.

    `projects` holds every name the call's project goes by (alias, id), so a key scoped to an alias works.
    """
    if principal.operations and _SCOPE_OF[operation] not in principal.operations:
        raise PermissionDenied(f"This key may not {operation} batch prediction jobs.")
    if principal.projects and not set(projects) & set(principal.projects):
        raise PermissionDenied(f"This key may not use project {projects[0]!r}.")
    if principal.locations and location not in principal.locations:
        raise PermissionDenied(f"This key may not use location {location!r}.")
    if model is not None and principal.models and not any(fnmatchcase(model, p) for p in principal.models):
        raise PermissionDenied(f"This key may not use model {model!r}.")
