"""The data boundary of a create: every location a job reads or writes must lie inside the caller's team's own.

Checked on the normalised body (camelCase, see `proxy.providers.vertex.job_fields`), after every other check of the body
and before anything reaches the upstream. Each URI is parsed strictly and forwarded in its normalised form, so
the location checked is the location Vertex is given. Any URI outside the team's prefixes or datasets, or one
that cannot be vouched for, is a 403 naming it.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidArgument, PermissionDenied
from proxy.tenancy.storage_uris import BadUri, parse_bigquery, parse_gcs
from proxy.tenancy.team_policy import TeamPolicy


def check_job_locations(job: dict[str, Any], policy: TeamPolicy) -> dict[str, Any]:
    """The job with its gs:// URIs normalised; PermissionDenied for any location outside `policy`."""
    inputs = job.get("inputConfig") or {}
    outputs = job.get("outputConfig") or {}
    if "gcsSource" in inputs:
        uris = inputs["gcsSource"].get("uris")
        if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
            raise InvalidArgument("input_config.gcs_source.uris must be a list of gs:// URIs.")
        inputs["gcsSource"]["uris"] = [gcs_input(uri, policy) for uri in uris]
    if "bigquerySource" in inputs:
        bigquery(inputs["bigquerySource"].get("inputUri"), policy, what="input")
    if "gcsDestination" in outputs:
        outputs["gcsDestination"]["outputUriPrefix"] = gcs_output(
            outputs["gcsDestination"].get("outputUriPrefix"), policy)
    if "bigqueryDestination" in outputs:
        bigquery(outputs["bigqueryDestination"].get("outputUri"), policy, what="output")
    return job


def _denied(uri: object, policy: TeamPolicy, reason: str) -> PermissionDenied:
    return PermissionDenied(f"Team {policy.team!r} may not use {uri!r}: {reason}. An admin sets a team's locations "
                            "with VBP_TEAM_GCS_PREFIXES or `vbp teams set`.")


def _outside(policy: TeamPolicy) -> str:
    if not policy.gcs_prefixes:
        return "no Cloud Storage location is configured for this team"
    return "it is outside the team's Cloud Storage prefixes (" + ", ".join(map(str, policy.gcs_prefixes)) + ")"


def gcs_input(uri: object, policy: TeamPolicy) -> str:
    """One input URI, wildcards allowed only past the prefix, normalised; else PermissionDenied."""
    if not isinstance(uri, str):
        raise InvalidArgument("input_config.gcs_source.uris must be a list of gs:// URIs.")
    try:
        parsed = parse_gcs(uri, wildcards=True)
    except BadUri as exc:
        raise _denied(uri, policy, str(exc)) from None
    fixed = parsed.fixed_part()
    # The part before any wildcard must itself lie in a prefix: `gs://b/team-*/x` could match another team's.
    if not any(parsed.bucket == p.bucket and fixed.startswith(p.path) for p in policy.gcs_prefixes):
        if fixed != parsed.path and any(parsed.bucket == p.bucket and p.path.startswith(fixed)
                                        for p in policy.gcs_prefixes):
            raise _denied(uri, policy, "a wildcard may not reach above the team's prefix")
        raise _denied(uri, policy, _outside(policy))
    return str(parsed)


def gcs_output(uri: object, policy: TeamPolicy) -> str:
    """The output prefix, read as the folder Vertex writes into, normalised; else PermissionDenied."""
    if not isinstance(uri, str):
        raise InvalidArgument("output_config.gcs_destination.output_uri_prefix must be a gs:// URI.")
    try:
        parsed = parse_gcs(uri)
    except BadUri as exc:
        raise _denied(uri, policy, str(exc)) from None
    # Vertex writes under `<prefix>/prediction-...`, so `gs://b/team-a` is the folder `team-a/` and
    # `gs://b/team-a-x` is not in it.
    if not any(parsed.as_folder().within(p) for p in policy.gcs_prefixes):
        raise _denied(uri, policy, _outside(policy))
    return str(parsed)


def bigquery(uri: object, policy: TeamPolicy, *, what: str) -> None:
    """A bq:// source or destination must name a dataset of the team; else PermissionDenied."""
    field = "input_config.bigquery_source.input_uri" if what == "input" else \
        "output_config.bigquery_destination.output_uri"
    if not isinstance(uri, str):
        raise InvalidArgument(f"{field} must be a bq:// URI.")
    try:
        parsed = parse_bigquery(uri)
    except BadUri as exc:
        raise _denied(uri, policy, str(exc)) from None
    if parsed.dataset_id is None:
        raise _denied(uri, policy, "it names no dataset, and Vertex would create one outside the team's datasets")
    if parsed.dataset_id not in policy.bq_datasets:
        datasets = ", ".join(sorted(policy.bq_datasets)) or "none are configured for this team"
        raise _denied(uri, policy, f"dataset {parsed.dataset_id} is not one of the team's BigQuery datasets "
                                   f"({datasets})")
