"""`vbp estimate FILE`: a local batch input, native Vertex lines or an OpenAI-format batch file, estimated with the
figures the proxy gives the same input at create (and `POST /v1/estimates`).

An OpenAI-format file is read as the OpenAI door reads it once uploaded (`proxy.openai_door.file_conversion`):
every line checked the same way (a file the door would refuse is refused here, with its message), then
- a model the catalog (VBP_MODELS_FILE) runs on OpenAI or Azure: the caller's lines, priced for every deployment
  serving the model (`proxy.budgets.openai_estimate`);
- any other model (Gemini on Vertex): the converted Vertex lines the door would store, by `LineEstimator`, priced
  for `publishers/google/models/<model>`.
The one check the door makes that a local file cannot get is the team's data boundary for gs:// URIs in lines
(there is no team here). The format is told by the first non-blank line: an object with `body` and no `request`
is an OpenAI batch line (`custom_id`, `method`, `url`, `body`); anything else is read as Vertex lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import msgspec

from proxy.budgets.estimate import Estimate, EstimateError, LineEstimator
from proxy.budgets.inputs import LOCAL_CHUNK_BYTES, Estimator, estimate_file
from proxy.catalog.catalog import Catalog, file_provider, serving_pairs
from proxy.openai_door.file_conversion import FileRejected, convert_file
from proxy.settings import Settings

if TYPE_CHECKING:
    from proxy.budgets.admission import BudgetGate

FORMATS = ("vertex", "openai")
VERTEX_MODEL = "publishers/google/models/{}"


def detect_format(path: Path) -> str:
    """`openai` when the first non-blank line is an OpenAI batch line (a `body`, no `request`), else `vertex`."""
    line = _first_line(path)
    return "openai" if isinstance(line, dict) and "body" in line and "request" not in line else "vertex"


def _first_line(path: Path) -> Any:
    """The first non-blank line, decoded; None when there is none or it is not JSON (the estimate or the door's
    checks then say what is wrong with it)."""
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                try:
                    return msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    return None
    return None


def estimate_local(path: Path, gate: BudgetGate, settings: Settings, catalog: Catalog | None, *,
                   model: str | None, file_format: str | None = None) -> Estimate:
    """The estimate of a local file (`file_format` None: detected); EstimateError says why there is none."""
    if (file_format or detect_format(path)) == "vertex":
        if not model:
            raise EstimateError("a Vertex batch input names no model: give --model")
        return estimate_file(path, gate.estimator(model))
    return _estimate_openai(path, gate, settings, catalog, model=model)


def _estimate_openai(path: Path, gate: BudgetGate, settings: Settings, catalog: Catalog | None, *,
                     model: str | None) -> Estimate:
    named = _first_model(path)
    if model and named and model != named:
        raise EstimateError(f"the file's lines name the model {named!r}, not {model!r}")
    named = named or model or ""
    kept = file_provider(catalog, named) != "vertex"
    estimator: Estimator
    if kept:  # the door keeps the caller's lines: they are what is estimated
        estimator = gate.openai_estimator(serving_pairs(catalog, named), model=named)
        sink: _Feed | _Discard = _Discard()
    else:  # the door converts the lines to Vertex's: those are estimated, as its create estimates them
        try:
            estimator = gate.estimator(VERTEX_MODEL.format(named))
        except EstimateError as exc:
            raise EstimateError(f"{exc} (a model of OpenAI or Azure needs the model catalog that serves it: "
                                "VBP_MODELS_FILE)") from None
        sink = _Feed(estimator)
    with path.open("rb") as handle:
        source = _Tee(handle, estimator) if kept else handle
        try:
            convert_file(cast(BinaryIO, source), cast(BinaryIO, sink), max_lines=settings.openai_max_file_lines,
                         max_bytes=settings.openai_max_file_bytes, keep=lambda _: kept)
        except FileRejected as exc:
            raise EstimateError(f"the OpenAI door would refuse this file: {exc.message}") from None
    return estimator.close()


def _first_model(path: Path) -> str | None:
    """`body.model` of the first non-blank line (the door refuses a file whose lines name another)."""
    line = _first_line(path)
    body = line.get("body") if isinstance(line, dict) else None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


class _Feed:
    """The sink of the conversion: each block of Vertex lines goes into the estimator instead of a file."""

    def __init__(self, estimator: LineEstimator) -> None:
        self.estimator = estimator

    def write(self, data: bytes) -> int:
        self.estimator.feed(data)
        return len(data)


class _Discard:
    """The sink of a kept file's conversion (nothing is written to it)."""

    def write(self, data: bytes) -> int:
        return len(data)


class _Tee:
    """The caller's bytes as the conversion reads them, also fed to the estimator (one pass over the file)."""

    def __init__(self, source: BinaryIO, estimator: Estimator) -> None:
        self.source, self.estimator = source, estimator

    def read(self, size: int = LOCAL_CHUNK_BYTES) -> bytes:
        chunk = self.source.read(size)
        if chunk:
            self.estimator.feed(chunk)
        return chunk
