"""Preparing a create body for Vertex: project aliases rewritten, and the labels that name the owner stamped."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxy.errors import InvalidArgument

if TYPE_CHECKING:  # not at run time: metering's worker processes read the labels without the ledger's models
    from proxy.tenancy.keys import Principal

RESERVED_LABEL_PREFIX = "vbp-"
TEAM_LABEL = "vbp-team"
KEY_LABEL = "vbp-key"
BATCH_LABEL = "vbp-batch"  # on the jobs of the OpenAI door: the batch id, for reconciliation to link the two
_LABEL_CHARS = re.compile(r"[^a-z0-9_-]")


def label_value(text: str) -> str:
    """Fit a value to Vertex's label charset: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    return _LABEL_CHARS.sub("-", text.lower())[:63]


def rewrite_aliases(value: Any, aliases: Mapping[str, str]) -> Any:
    """Replace `projects/<alias>/` with the real project in every resource path of the body."""
    if not aliases:
        return value
    if isinstance(value, str):
        if value.startswith("projects/"):
            project, sep, rest = value[len("projects/"):].partition("/")
            if project in aliases:
                return f"projects/{aliases[project]}{sep}{rest}"
        return value
    if isinstance(value, list):
        return [rewrite_aliases(item, aliases) for item in value]
    if isinstance(value, dict):
        return {key: rewrite_aliases(item, aliases) for key, item in value.items()}
    return value


def prepare_create_body(body: object, *, principal: Principal, aliases: Mapping[str, str]) -> dict[str, Any]:
    """Validate the shape we rely on, rewrite aliases and stamp the ownership labels."""
    if not isinstance(body, dict):
        raise InvalidArgument("The request body must be a JSON object (a BatchPredictionJob).")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidArgument("labels must be a map of strings to strings.")
    reserved = sorted(k for k in labels if k.lower().startswith(RESERVED_LABEL_PREFIX))
    if reserved:
        raise InvalidArgument(
            f"Label keys starting with {RESERVED_LABEL_PREFIX!r} are reserved for the proxy: {', '.join(reserved)}.")
    prepared: dict[str, Any] = rewrite_aliases(body, aliases)
    prepared["labels"] = {**labels, TEAM_LABEL: label_value(principal.team), KEY_LABEL: label_value(principal.key_id)}
    return prepared


def body_model(body: Mapping[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None
