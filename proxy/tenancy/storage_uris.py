"""Cloud Storage and BigQuery locations as the data boundaries compare them: parsed strictly, normalised once.

A URI is refused rather than repaired when it could mean two things: dot segments (`..`, `.`), empty segments
(`//`), percent-escapes (`%2F` is a slash to some readers and three characters to others), backslashes and
control characters. What is left is compared as Cloud Storage compares it: bucket names are lowercase there
(an upper-case spelling names the same bucket to some clients and is invalid to others, so it is folded),
object names are case-sensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Cloud Storage bucket naming rules: 3-63 characters (up to 222 with dots, each dot-separated part at most
# 63), lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
_BUCKET_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{1,220})[a-z0-9]")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Cloud Storage wildcards, which Vertex accepts in input URIs: `*`, `**`, `?` and `[...]` character sets.
WILDCARD_CHARS = frozenset("*?[]")
# BigQuery: project ids as Google Cloud allows them (6-30 characters), datasets of letters, digits and `_`,
# tables with the same plus `-`, `$` (partition decorators) and `*` (wildcard tables, input only).
_BQ_PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_BQ_DATASET_RE = re.compile(r"[A-Za-z0-9_]{1,1024}")
_BQ_TABLE_RE = re.compile(r"[A-Za-z0-9_$*-]{1,1024}")


class BadUri(ValueError):
    """A URI the boundaries cannot vouch for; the message says why."""


@dataclass(frozen=True)
class GcsUri:
    """`gs://bucket/path`, normalised: lowercase bucket, `path` as written (object names are case-sensitive)."""

    bucket: str
    path: str

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.path}"

    def as_folder(self) -> GcsUri:
        """The same location with a trailing slash: a prefix names a folder, never a name that begins alike."""
        return self if self.path == "" or self.path.endswith("/") else GcsUri(self.bucket, self.path + "/")

    def within(self, prefix: GcsUri) -> bool:
        """True when this location lies in the folder `prefix` (which ends with `/`, or is a whole bucket)."""
        return self.bucket == prefix.bucket and self.path.startswith(prefix.path)

    def fixed_part(self) -> str:
        """The path up to its first wildcard character: the only part a wildcard cannot widen."""
        for at, char in enumerate(self.path):
            if char in WILDCARD_CHARS:
                return self.path[:at]
        return self.path


def parse_gcs(text: str, *, wildcards: bool = False) -> GcsUri:
    """Parse and normalise a `gs://` URI; BadUri when it is malformed or could be read two ways."""
    if not isinstance(text, str) or not text.startswith(("gs://", "GS://", "Gs://", "gS://")):
        raise BadUri("it is not a gs:// URI")
    rest = text[5:]
    if any(ord(char) < 0x20 or char == "\x7f" for char in rest) or "\\" in rest:
        raise BadUri("it contains control characters or backslashes")
    if _PERCENT_ESCAPE.search(rest):
        raise BadUri("it contains percent-escapes (Cloud Storage names are not URL-decoded)")
    bucket, _, path = rest.partition("/")
    bucket = bucket.lower()
    if any(char in WILDCARD_CHARS for char in bucket):
        raise BadUri("a wildcard may not stand in the bucket name")
    if _BUCKET_RE.fullmatch(bucket) is None or ".." in bucket or any(len(p) > 63 for p in bucket.split(".")):
        raise BadUri(f"{bucket!r} is not a valid bucket name")
    if "//" in path or path.startswith("/"):
        raise BadUri("it contains an empty path segment (//)")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadUri("it contains a . or .. path segment")
    if not wildcards and any(char in WILDCARD_CHARS for char in path):
        raise BadUri("wildcards are not allowed here")
    return GcsUri(bucket, path)


def parse_gcs_prefix(text: str) -> GcsUri:
    """A configured prefix: a gs:// folder with no wildcard, returned with its trailing slash."""
    return parse_gcs(text).as_folder()


@dataclass(frozen=True)
class BigQueryUri:
    """`bq://project.dataset[.table]`; `dataset` is None for a bare project (Vertex then makes a dataset)."""

    project: str
    dataset: str | None
    table: str | None

    @property
    def dataset_id(self) -> str | None:
        return f"{self.project}.{self.dataset}" if self.dataset is not None else None


def parse_bigquery(text: str) -> BigQueryUri:
    """Parse a `bq://` URI; BadUri when it is malformed."""
    if not isinstance(text, str) or not text.startswith("bq://"):
        raise BadUri("it is not a bq:// URI")
    parts = text[5:].split(".")
    if len(parts) > 3:
        raise BadUri("it has more parts than project.dataset.table")
    project = parts[0].lower()
    if _BQ_PROJECT_RE.fullmatch(project) is None:
        raise BadUri(f"{parts[0]!r} is not a valid project id")
    dataset = parts[1] if len(parts) > 1 else None
    table = parts[2] if len(parts) > 2 else None
    if dataset is not None and _BQ_DATASET_RE.fullmatch(dataset) is None:
        raise BadUri(f"{dataset!r} is not a valid dataset name")
    if table is not None and _BQ_TABLE_RE.fullmatch(table) is None:
        raise BadUri(f"{table!r} is not a valid table name")
    return BigQueryUri(project, dataset, table)


def parse_dataset(text: str) -> str:
    """A configured dataset, `project.dataset`, normalised (lowercase project); ValueError otherwise."""
    try:
        uri = parse_bigquery("bq://" + text.strip())
    except BadUri as exc:
        raise ValueError(f"{text!r} is not PROJECT.DATASET: {exc}") from None
    if uri.dataset_id is None or uri.table is not None:
        raise ValueError(f"{text!r} is not PROJECT.DATASET")
    return uri.dataset_id
