"""Matching a raw request target to one of the five batchPredictionJobs calls, strictly.

Matching works on the raw, still-encoded path: anything that could mean something else once decoded or
normalised (percent-encoding, dot segments, backslashes, `@`, `#`, empty segments) is refused before a URL
is ever built, and only these five shapes exist. Everything else is 404: this is not an open proxy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.errors import InvalidArgument, MethodNotAllowed, NotFound
from proxy.providers.vertex.resources import API_VERSIONS, valid_job_id, valid_location, valid_project

MAX_TARGET_BYTES = 2048
_FORBIDDEN = (b"%", b"\\", b"@", b"#", b"//", b"/./", b"/../")
_FORBIDDEN_RE = re.compile(b"|".join(re.escape(bad) for bad in _FORBIDDEN))  # one scan instead of seven

# (has job id, action) -> {method: operation}
_OPERATIONS: dict[tuple[bool, str | None], dict[str, str]] = {
    (False, None): {"POST": "create", "GET": "list"},
    (True, None): {"GET": "get", "DELETE": "delete"},
    (True, "cancel"): {"POST": "cancel"},
}


@dataclass(frozen=True, slots=True)
class JobRoute:
    """A matched passthrough call; `path` is the upstream path to build from the (validated) parts."""

    operation: str  # create | list | get | cancel | delete
    api_version: str
    project: str
    location: str
    job_id: str | None

    def upstream_path(self, project: str) -> str:
        path = f"/{self.api_version}/projects/{project}/locations/{self.location}/batchPredictionJobs"
        if self.job_id is not None:
            path += f"/{self.job_id}"
        if self.operation == "cancel":
            path += ":cancel"
        return path


def is_passthrough_path(raw_path: bytes) -> bool:
    """Cheap pre-check used by the dispatcher: does this target belong to the passthrough at all?

    Only Vertex resource paths do (`/{v1,v1beta1}/projects/...`); the proxy's own API (`/v1/keys`, `/v1/costs`)
    and unknown paths go to the site, which answers 404 in the envelope for what it does not know.
    """
    return raw_path.startswith((b"/v1/projects/", b"/v1beta1/projects/"))


def match(method: str, raw_path: bytes) -> JobRoute:
    """Match a request to a passthrough call or raise the Google-envelope error that explains why not."""
    if len(raw_path) > MAX_TARGET_BYTES:
        raise InvalidArgument("The request path is too long.")
    if not raw_path.startswith(b"/") or _FORBIDDEN_RE.search(raw_path) or raw_path.endswith(
            (b"/.", b"/..")):
        raise InvalidArgument("The request path contains characters or segments that are not allowed.")
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidArgument("The request path is not ASCII.") from None
    parts = path[1:].split("/")
    if len(parts) not in (6, 7) or parts[0] not in API_VERSIONS or parts[1] != "projects" \
            or parts[3] != "locations" or parts[5] != "batchPredictionJobs":
        raise NotFound(f"The requested path {path!r} was not found.")
    version, project, location = parts[0], parts[2], parts[4]
    job_id: str | None = None
    action: str | None = None
    if len(parts) == 7:
        job_id, _, tail = parts[6].partition(":")
        action = tail if _ else None
        if action not in (None, "cancel") or not job_id:  # `.../batchPredictionJobs/` names nothing
            raise NotFound(f"The requested path {path!r} was not found.")
    if not valid_project(project):
        raise InvalidArgument(f"Invalid project {project!r}.")
    if not valid_location(location):
        raise InvalidArgument(f"Invalid location {location!r}.")
    if job_id is not None and not valid_job_id(job_id):
        raise InvalidArgument(f"Invalid batch prediction job id {job_id!r}.")
    operations = _OPERATIONS[(job_id is not None, action)]
    operation = operations.get(method)
    if operation is None:
        allowed = ", ".join(sorted(operations))
        raise MethodNotAllowed(f"Method {method} is not allowed here; use {allowed}.", headers={"allow": allowed})
    return JobRoute(operation, version, project, location, job_id)
