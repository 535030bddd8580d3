"""The Vertex job a stored batch file of the door runs as: the create body of a batch, and the body an estimate
of the file (`POST /v1/estimates {"input_file_id": ...}`) reads, so that the dry run and the create's reservation
estimate the very same input (the converted Vertex lines in VBP_FILES_BUCKET)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

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


def estimate_file_job(sessions: sessionmaker[Session], principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """The job body to estimate for `{"input_file_id": ...}`: the caller's team's stored file (404 otherwise, in
    Google's envelope: the estimate is an admin/report route), with the key's model scope applied (blocking)."""
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
    return file_job_body(file, display_name=f"estimate of {file.id}", output_uri="")
