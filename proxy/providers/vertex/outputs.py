"""Where a Vertex batch job's outputs are: the final `*.jsonl` files under its gcsOutputDirectory.

Reading their bytes is the same for every provider (`proxy.metering.objects`); which files count is Vertex's
layout: every `*.jsonl` under the directory, except the rows exported while the job ran, which Vertex keeps under
`incremental_predictions/` and repeats in the final files.
"""

from __future__ import annotations

from google.cloud import storage

from proxy.metering.objects import read_error
from proxy.providers.base import BucketMissing, OutputObject

INCREMENTAL_FOLDER = "incremental_predictions"


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/some/dir` -> (`bucket`, `some/dir`)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, path = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, path


def list_output_objects(client: storage.Client, gcs_output_directory: str) -> list[OutputObject]:
    """Every final `*.jsonl` under the output directory (none under `incremental_predictions/`), sorted by name."""
    bucket, prefix = split_gcs_uri(gcs_output_directory)
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # `dir` must not also match `dir-2/`
    found = []
    try:
        for blob in client.list_blobs(bucket, prefix=prefix):
            relative = blob.name[len(prefix):]
            if not relative.endswith(".jsonl"):
                continue
            if INCREMENTAL_FOLDER in relative.split("/")[:-1]:
                continue  # rows exported while the job ran: the final files repeat them
            found.append(OutputObject(bucket, blob.name, int(blob.generation), int(blob.size),
                                      blob.content_encoding or ""))
    except Exception as exc:  # google.api_core errors, requests and auth errors alike
        if getattr(exc, "code", None) == 404:  # listing a prefix of a bucket that exists is never a 404
            raise BucketMissing(bucket, f"the output bucket gs://{bucket} does not exist") from exc
        raise read_error(exc, f"listing {gcs_output_directory}") from exc
    return sorted(found)
