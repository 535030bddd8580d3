"""The Vertex job a stored batch file of the door runs as: the create body of a batch, and the body an estimate
of the file (`POST /v1/estimates {"input_file_id": ...}`) reads, so that the dry run and the create's reservation
estimate the very same input (the converted Vertex lines in VBP_FILES_BUCKET). A file of an OpenAI or Azure model
has no Vertex body: its estimate reads the caller's kept bytes (`openai_file_estimate`), for the create's
reservation and the dry run alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets.admission import BudgetGate
from proxy.budgets.estimate import Estimate
from proxy.catalog.catalog import Catalog, serving_pairs
from proxy.errors import InvalidArgument, NotFound
from proxy.ledger.models import OpenAIFile
from proxy.openai_door import records
from proxy.openai_door.compat import decode_file_id
from proxy.tenancy.keys import Principal
from proxy.tenancy.scopes import check_model

ESTIMATE_FIELDS = ("input_file_id",)


def file_job_body(file: OpenAIFile, *, display_name: str, output_uri: str) -> dict[str, Any]:
    """The Vertex create body (camelCase, before the proxy's labels) of a batch of the stored file."""
    return {"displayName": display_name, "model": f"publishers/google/models/{file.model}",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [file.converted_uri]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": output_uri}}}


def openai_file_estimate(gate: BudgetGate, catalog: Catalog | None, file: OpenAIFile) -> Callable[[], Estimate]:
    """The estimate (blocking; raises Unestimable) of a stored file of an OpenAI or Azure model, priced for every
    catalog deployment that may run its batch."""
    deployments = serving_pairs(catalog, file.model)
    return lambda: gate.estimate_openai_file(file.input_uri, deployments, model=file.model)


def estimated_file(sessions: sessionmaker[Session], principal: Principal, body: dict[str, Any]) -> OpenAIFile:
    """The stored file to estimate for `{"input_file_id": ...}`: the caller's team's (404 otherwise, in Google's
    envelope: the estimate is an admin/report route), with the key's model scope applied (blocking). A Gemini
    file's estimate reads the Vertex body `file_job_body` gives (`estimate_body`), the others'
    `openai_file_estimate`."""
    unknown = sorted(set(body) - set(ESTIMATE_FIELDS))
    file_id = body.get("input_file_id")
    if unknown or not isinstance(file_id, str) or not file_id:
        raise InvalidArgument("An estimate of an OpenAI-door file takes only input_file_id (a file id of your team); "
                              f"got {', '.join(sorted(body))}.")
    file_id = decode_file_id(file_id)
    with sessions() as session:
        file = records.find_file(session, team=principal.team, file_id=file_id)
    if file is None:
        raise NotFound(f"File {file_id[:200]} not found.")
    check_model(principal, model=file.model)
    return file


def estimate_body(file: OpenAIFile) -> dict[str, Any]:
    """The Vertex body an estimate of a Gemini file reads (the one its batch would run)."""
    return file_job_body(file, display_name=f"estimate of {file.id}", output_uri="")
