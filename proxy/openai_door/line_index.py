"""The index of a converted batch file: each caller line's `custom_id`, and how Vertex output rows find their line.

How a row finds its line (`output_conversion` does the finding):
- chat files: each Vertex line carries the caller's 1-based line number in its request's `labels`
  (`{"vbp_line": "17"}`), which Vertex echoes inside the row's `request`, and the caller's `custom_id` as a
  sibling key, which Vertex may echo too. The label is read first; the sibling `custom_id` is the fallback
  (`line_of`). So rows map whether or not sibling keys come back.
- embedding files: a Vertex embedding line is the instance itself (`{"content": ...}`) and carries nothing else
  (an extra key would reach the model), but Vertex echoes the instance whole, so a row finds its input by a
  digest of its content (`inputs_with_digest`). Each caller line may have several inputs (a list `input`);
  they are consecutive Vertex lines, `first_input(line)` .. `first_input(line + 1) - 1`.

Stored beside the converted file as `to_bytes()` (msgpack, a few bytes per line), read back with `from_bytes`.
Memory is the custom_ids' UTF-8 bytes plus 8 bytes per line (and 12 per embedding input).
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_right
from typing import Literal

import msgspec

Kind = Literal["chat", "embeddings"]
LINE_LABEL = "vbp_line"  # the request label that carries the caller's line number
_MAGIC = "vbp-openai-line-index"
_VERSION = 1
DIGEST_BYTES = 8


def content_digest(content: str) -> bytes:
    """The digest an embedding input is found by (8 bytes of BLAKE2b: no collision in 50,000 inputs to fear)."""
    return hashlib.blake2b(content.encode(), digest_size=DIGEST_BYTES).digest()


class _Stored(msgspec.Struct, array_like=True):
    magic: str
    version: int
    kind: str
    ids: bytes  # every custom_id's UTF-8 bytes, one after the other
    ends: bytes  # array('Q'): where each custom_id ends in `ids` (a leading 0)
    starts: bytes  # embeddings: array('Q'), each line's first input, then the number of inputs
    digests: bytes  # embeddings: DIGEST_BYTES per input, in input order


class LineIndex:
    """Line number <-> custom_id of one caller file, and (embeddings) each input's line."""

    def __init__(self, kind: Kind, ids: bytes, ends: array[int], starts: array[int] | None = None,
                 digests: bytes = b"") -> None:
        self.kind: Kind = kind
        self._ids = ids
        self._ends = ends
        self._starts = starts if starts is not None else array("Q", range(len(ends)))
        self._digests = digests
        self._lines_by_id: dict[str, int] | None = None
        self._inputs_by_digest: dict[bytes, list[int]] | None = None

    def __len__(self) -> int:
        return len(self._ends) - 1

    def custom_id(self, line: int) -> str:
        """The custom_id of a 1-based line."""
        if not 1 <= line <= len(self):
            raise IndexError(f"line {line} is not in this file of {len(self)} lines")
        return self._ids[self._ends[line - 1]:self._ends[line]].decode()

    def custom_id_table(self) -> tuple[bytes, bytes]:
        """Every custom_id's UTF-8 bytes, one after the other, and where each ends (native uint64s, a leading 0)."""
        return self._ids, self._ends.tobytes()

    def line_of(self, custom_id: str) -> int | None:
        """The line of a custom_id (built on first use: only rows without their label need it)."""
        if self._lines_by_id is None:
            self._lines_by_id = {self.custom_id(line): line for line in range(1, len(self) + 1)}
        return self._lines_by_id.get(custom_id)

    @property
    def inputs(self) -> int:
        """The Vertex lines of the converted file (= len(self) for chat; every embedding input otherwise)."""
        return self._starts[-1]

    def first_input(self, line: int) -> int:
        """The 0-based Vertex line of a caller line's first input (`first_input(len + 1)` = all inputs)."""
        return self._starts[line - 1]

    def line_of_input(self, at: int) -> int:
        """The 1-based caller line of a 0-based Vertex line (an embedding input)."""
        return bisect_right(self._starts, at)

    def inputs_with_digest(self, digest: bytes) -> list[int]:
        """The 0-based Vertex lines (embedding inputs) whose content has this digest, in input order."""
        if self._inputs_by_digest is None:
            found: dict[bytes, list[int]] = {}
            digests = self._digests
            for at in range(len(digests) // DIGEST_BYTES):
                found.setdefault(digests[at * DIGEST_BYTES:(at + 1) * DIGEST_BYTES], []).append(at)
            self._inputs_by_digest = found
        return self._inputs_by_digest.get(digest, [])

    def to_bytes(self) -> bytes:
        """The index as stored beside the converted file."""
        return msgspec.msgpack.encode(_Stored(_MAGIC, _VERSION, self.kind, self._ids, self._ends.tobytes(),
                                              self._starts.tobytes() if self.kind == "embeddings" else b"",
                                              self._digests))

    @classmethod
    def from_bytes(cls, data: bytes) -> LineIndex:
        """Read back what `to_bytes` wrote; ValueError for anything else."""
        try:
            stored = msgspec.msgpack.decode(data, type=_Stored)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a line index: {exc}") from None
        if stored.magic != _MAGIC or stored.version != _VERSION or stored.kind not in ("chat", "embeddings"):
            raise ValueError("not a line index of this version")
        ends = array("Q")
        ends.frombytes(stored.ends)
        starts = None
        if stored.kind == "embeddings":
            starts = array("Q")
            starts.frombytes(stored.starts)
        kind: Kind = "chat" if stored.kind == "chat" else "embeddings"
        index = cls(kind, stored.ids, ends, starts, stored.digests)
        if (not ends or ends[0] != 0 or ends[-1] != len(stored.ids) or len(index._starts) != len(ends)
                or (starts is not None and len(stored.digests) != DIGEST_BYTES * starts[-1])):
            raise ValueError("a damaged line index")
        return index


class LineIndexBuilder:
    """Collects the index while a file is converted, line by line."""

    def __init__(self, kind: Kind) -> None:
        self.kind: Kind = kind
        self._ids = bytearray()
        self._ends = array("Q", [0])
        self._starts = array("Q", [0])
        self._digests = bytearray()

    def add(self, custom_id: str, contents: list[str] | None = None) -> None:
        """The next line: its custom_id and (embeddings) the contents of its inputs."""
        self._ids += custom_id.encode()
        self._ends.append(len(self._ids))
        if contents is not None:
            for content in contents:
                self._digests += content_digest(content)
            self._starts.append(self._starts[-1] + len(contents))
        else:
            self._starts.append(self._starts[-1] + 1)

    def add_chat(self, custom_ids: list[str]) -> None:
        """The next chat lines (one input each): their custom_ids."""
        ids, ends = self._ids, self._ends
        for custom_id in custom_ids:
            ids += custom_id.encode()
            ends.append(len(ids))
        last = self._starts[-1]
        self._starts.extend(range(last + 1, last + 1 + len(custom_ids)))

    def build(self) -> LineIndex:
        """The finished index."""
        starts = self._starts if self.kind == "embeddings" else None
        return LineIndex(self.kind, bytes(self._ids), self._ends, starts, bytes(self._digests))
