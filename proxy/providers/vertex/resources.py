"""Resource names, the strict patterns their parts must match, and the Google host of each location.

Every part of a path is checked here before a URL is built: the location becomes part of a host name,
so a loose pattern would turn the proxy into an open one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROJECT_RE = re.compile(r"(?:[a-z][a-z0-9-]{2,61}[a-z0-9]|[0-9]{1,20})")
LOCATION_RE = re.compile(r"(?:global|us|eu|[a-z]{2,20}-[a-z]{2,20}[0-9]{1,2})")
JOB_ID_RE = re.compile(r"[0-9]{1,20}")
API_VERSIONS = ("v1", "v1beta1")

_JOB_NAME_RE = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/batchPredictionJobs/(?P<job_id>[^/]+)"
)
_MODEL_RE = re.compile(
    r"(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"(?:publishers/(?P<publisher>[^/]+)/models/|models/)(?P<model>[^/@]+)(?:@(?P<version>[^/]+))?"
)


def valid_project(value: str) -> bool:
    return PROJECT_RE.fullmatch(value) is not None


def valid_location(value: str) -> bool:
    return LOCATION_RE.fullmatch(value) is not None


def valid_job_id(value: str) -> bool:
    return JOB_ID_RE.fullmatch(value) is not None


def google_base_url(location: str) -> str:
    """The real Vertex host for a location, as Google documents them (listed in docs/design.md)."""
    if not valid_location(location):
        raise ValueError(f"invalid location {location!r}")
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


@dataclass(frozen=True)
class JobName:
    """`projects/{project}/locations/{location}/batchPredictionJobs/{job_id}`."""

    project: str
    location: str
    job_id: str

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/batchPredictionJobs/{self.job_id}"

    @classmethod
    def parse(cls, name: str) -> JobName | None:
        match = _JOB_NAME_RE.fullmatch(name)
        if match is None:
            return None
        return cls(match["project"], match["location"], match["job_id"])


def model_id(model: str) -> str | None:
    """The bare model id of any model resource form: `.../models/gemini-2.5-flash@1` -> `gemini-2.5-flash`."""
    match = _MODEL_RE.fullmatch(model.strip())
    return match["model"] if match else None
