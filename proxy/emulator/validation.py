"""Checks of a create body, with the status and message Vertex answers for each mistake."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from proxy.errors import InvalidArgument, NotFound
from proxy.providers.vertex.resources import model_id

# BatchPredictionJob's fields (v1 and v1beta1); output-only ones are accepted and ignored, as Vertex does.
INPUT_FIELDS = frozenset({
    "displayName", "model", "unmanagedContainerModel", "inputConfig", "instanceConfig", "modelParameters",
    "outputConfig", "dedicatedResources", "serviceAccount", "manualBatchTuningParameters", "generateExplanation",
    "explanationSpec", "labels", "encryptionSpec", "modelMonitoringConfig", "disableContainerLogging",
})
OUTPUT_FIELDS = frozenset({
    "name", "modelVersionId", "outputInfo", "state", "error", "partialFailures", "resourcesConsumed",
    "completionStats", "createTime", "startTime", "endTime", "updateTime", "modelMonitoringStatsAnomalies",
    "modelMonitoringStatus", "satisfiesPzs", "satisfiesPzi",
})
JOB_FIELDS = INPUT_FIELDS | OUTPUT_FIELDS
# The nested messages whose field names are checked too; maps (labels) and other messages are taken as given.
_NESTED: dict[str, frozenset[str]] = {
    "inputConfig": frozenset({"instancesFormat", "gcsSource", "bigquerySource"}),
    "gcsSource": frozenset({"uris"}),
    "bigquerySource": frozenset({"inputUri"}),
    "outputConfig": frozenset({"predictionsFormat", "gcsDestination", "bigqueryDestination"}),
    "gcsDestination": frozenset({"outputUriPrefix"}),
    "bigqueryDestination": frozenset({"outputUri"}),
}
_LABEL_RE = re.compile(r"[\w-]{0,64}")
# Proto JSON takes a field by its lowerCamelCase name or its proto name, nothing looser: `labels_` is neither.
_CAMEL_NAME = re.compile(r"[a-z][A-Za-z0-9]*")
_PROTO_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def camel(name: str) -> str:
    """`output_uri_prefix` -> `outputUriPrefix` (proto JSON accepts both spellings)."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _json_name(name: str) -> str | None:
    if _CAMEL_NAME.fullmatch(name):
        return name
    if _PROTO_NAME.fullmatch(name):
        return camel(name)
    return None


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


def _recase(value: Mapping[str, Any], known: frozenset[str], path: str) -> dict[str, Any]:
    """A message in camelCase; unknown names and a field given in both spellings are refused as Vertex does."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _json_name(key) if isinstance(key, str) else None
        if name is None or name not in known:
            where = "" if path == "batch_prediction_job" else f" at '{path}'"
            raise InvalidArgument(f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.')
        if name in out:
            raise InvalidArgument(f"Invalid JSON payload received. Duplicate field '{path}.{_snake(name)}'.")
        if name in _NESTED and isinstance(item, Mapping):
            item = _recase(item, _NESTED[name], f"{path}.{_snake(name)}")
        out[name] = item
    return out


def validate_create(body: Any, *, models: Collection[str]) -> tuple[dict[str, Any], str]:
    """The client fields of a valid create body (camelCase) and its bare model id; else InvalidArgument/NotFound."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("Invalid JSON payload received. The body must be a BatchPredictionJob object.")
    job = _recase(body, JOB_FIELDS, "batch_prediction_job")
    spec = {key: value for key, value in job.items() if key in INPUT_FIELDS}
    if not isinstance(spec.get("displayName"), str) or not spec["displayName"].strip():
        raise InvalidArgument("BatchPredictionJob.display_name is required.")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidArgument("BatchPredictionJob.model is required.")
    bare = model_id(model)
    if bare is None:
        raise InvalidArgument(f"Invalid Model resource name: {model}.")
    if ("publishers/" in model and "publishers/google/" not in model) or bare not in models:
        raise NotFound(f"The PublisherModel {bare} does not exist.")
    _check_input(spec.get("inputConfig"))
    _check_output(spec.get("outputConfig"))
    _check_labels(spec.get("labels"))
    return spec, bare


def _one_of(config: Mapping[str, Any], keys: tuple[str, ...], what: str) -> str:
    present = [key for key in config if key in keys or key.endswith(("Source", "Destination"))]
    if len(present) != 1 or present[0] not in keys:
        raise InvalidArgument(f"{what} must have exactly one of {', '.join(keys)}.")
    return present[0]


def _check_input(config: Any) -> None:
    if not isinstance(config, Mapping):
        raise InvalidArgument("BatchPredictionJob.input_config is required.")
    if not isinstance(config.get("instancesFormat"), str) or not config["instancesFormat"]:
        raise InvalidArgument("BatchPredictionJob.input_config.instances_format is required.")
    source = _one_of(config, ("gcsSource", "bigquerySource"), "input_config")
    if source == "gcsSource":
        uris = config["gcsSource"].get("uris") if isinstance(config["gcsSource"], Mapping) else None
        if (not isinstance(uris, list) or not uris
                or not all(isinstance(uri, str) and uri.startswith("gs://") and len(uri) > 5 for uri in uris)):
            raise InvalidArgument("input_config.gcs_source.uris must list gs:// URIs.")
    else:
        uri = config["bigquerySource"].get("inputUri") if isinstance(config["bigquerySource"], Mapping) else None
        if not isinstance(uri, str) or not uri.startswith("bq://"):
            raise InvalidArgument("input_config.bigquery_source.input_uri must be a bq:// URI.")


def _check_output(config: Any) -> None:
    if not isinstance(config, Mapping):
        raise InvalidArgument("BatchPredictionJob.output_config is required.")
    destination = _one_of(config, ("gcsDestination", "bigqueryDestination"), "output_config")
    target = config[destination]
    if destination == "gcsDestination":
        prefix = target.get("outputUriPrefix") if isinstance(target, Mapping) else None
        if not isinstance(prefix, str) or not prefix.startswith("gs://") or len(prefix) <= 5:
            raise InvalidArgument("output_config.gcs_destination.output_uri_prefix must be a gs:// URI.")
    else:
        uri = target.get("outputUri") if isinstance(target, Mapping) else None
        if not isinstance(uri, str) or not uri.startswith("bq://"):
            raise InvalidArgument("output_config.bigquery_destination.output_uri must be a bq:// URI.")


def _label_part_ok(text: str, *, key: bool) -> bool:
    if not isinstance(text, str) or _LABEL_RE.fullmatch(text) is None or any(c.isupper() for c in text):
        return False
    return not key or (bool(text) and text[0].isalpha())


def _check_labels(labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, Mapping) or len(labels) > 64:
        raise InvalidArgument("labels must be a map of at most 64 entries.")
    for key, value in labels.items():
        if not _label_part_ok(key, key=True) or not _label_part_ok(value, key=False):
            raise InvalidArgument(
                f"Invalid label {key!r}: {value!r}. Keys and values have at most 64 characters: lowercase letters, "
                "digits, underscores and dashes; keys start with a letter.")
