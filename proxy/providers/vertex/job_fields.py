"""The fields of a BatchPredictionJob create body, read the way Vertex reads proto JSON.

Vertex accepts each field by its lowerCamelCase JSON name or its proto (snake_case) name, and refuses any
other name. The proxy does the same before it checks anything, and forwards one spelling (camelCase), so that
what it checked is what Vertex reads: `labels_` or `model_` cannot slip a second value past a check, and
`display_name` next to `displayName` is refused instead of one silently winning.

Fields come in three kinds:
- `input`: what a Gemini batch job needs; checked and forwarded.
- `output`: output-only fields, which Vertex ignores in a create; dropped.
- `restricted`: fields a Gemini batch job does not need, several of which reach data or identities the data
  boundaries cannot check (a service account, an encryption key, a container's artifacts); refused unless the
  team's policy allows them, and then forwarded as given.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import InvalidArgument


@dataclass(frozen=True)
class Field:
    """One field of a message: its JSON and proto names, its kind, and its own fields when it is a message."""

    camel: str
    kind: str = "input"
    fields: tuple[Field, ...] | None = None  # a message whose field names are checked too
    snake: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "snake", re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), self.camel))


def _message(*fields: Field) -> tuple[Field, ...]:
    return fields


_INPUT_CONFIG = _message(
    Field("instancesFormat"),
    Field("gcsSource", fields=_message(Field("uris"))),
    Field("bigquerySource", fields=_message(Field("inputUri"))),
)
_OUTPUT_CONFIG = _message(
    Field("predictionsFormat"),
    Field("gcsDestination", fields=_message(Field("outputUriPrefix"))),
    Field("bigqueryDestination", fields=_message(Field("outputUri"))),
)
BATCH_PREDICTION_JOB = _message(
    Field("displayName"), Field("model"), Field("labels"), Field("disableContainerLogging"),
    Field("inputConfig", fields=_INPUT_CONFIG), Field("outputConfig", fields=_OUTPUT_CONFIG),
    *(Field(name, "restricted") for name in (
        "serviceAccount", "dedicatedResources", "manualBatchTuningParameters", "encryptionSpec",
        "unmanagedContainerModel", "explanationSpec", "generateExplanation", "modelParameters", "instanceConfig",
        "modelMonitoringConfig")),
    *(Field(name, "output") for name in (
        "name", "modelVersionId", "outputInfo", "state", "error", "partialFailures", "resourcesConsumed",
        "completionStats", "createTime", "startTime", "endTime", "updateTime", "satisfiesPzs", "satisfiesPzi",
        "modelMonitoringStatsAnomalies", "modelMonitoringStatus")),
)
RESTRICTED_FIELDS: tuple[str, ...] = tuple(f.camel for f in BATCH_PREDICTION_JOB if f.kind == "restricted")
_ROOT_PATH = "batch_prediction_job"


def restricted_field(name: str) -> str:
    """The camelCase name of a restricted field given in either spelling; ValueError for any other name."""
    for item in BATCH_PREDICTION_JOB:
        if item.kind == "restricted" and name in (item.camel, item.snake):
            return item.camel
    raise ValueError(f"{name!r} is not a field a team can be allowed; choose from {', '.join(RESTRICTED_FIELDS)}")


def normalise_job(body: object, *, allowed: Collection[str] = ()) -> dict[str, Any]:
    """The create body in camelCase with only input fields (and the `allowed` restricted ones); else 400."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("Invalid JSON payload received. The body must be a BatchPredictionJob object.")
    return _normalise(body, BATCH_PREDICTION_JOB, _ROOT_PATH, allowed)


def _normalise(value: Mapping[str, Any], fields: tuple[Field, ...], path: str,
               allowed: Collection[str]) -> dict[str, Any]:
    by_name = {name: item for item in fields for name in (item.camel, item.snake)}
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for name, item_value in value.items():
        item = by_name.get(name)
        if item is None:
            where = "" if path == _ROOT_PATH else f" at '{path}'"
            raise InvalidArgument(f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.')
        if item.camel in spelled:
            raise InvalidArgument(f"Invalid JSON payload received. Field '{path}.{item.snake}' is given twice, as "
                                  f'"{spelled[item.camel]}" and "{name}".')
        spelled[item.camel] = name
        if item.kind == "output" or item_value is None:
            continue  # Vertex ignores output-only fields in a create, and null is an absent field in proto JSON
        if item.kind == "restricted" and item.camel not in allowed:
            raise InvalidArgument(
                f"BatchPredictionJob.{item.snake} is not allowed through this proxy: a Gemini batch job does not "
                "need it. An admin can allow it for your team (vbp teams set TEAM --allow-field "
                f"{item.camel}).")
        if item.fields is not None:
            child_path = f"{path}.{item.snake}"
            if not isinstance(item_value, Mapping):
                raise InvalidArgument(f"Invalid value at '{child_path}': expected an object.")
            item_value = _normalise(item_value, item.fields, child_path, allowed)
        out[item.camel] = item_value
    return out
