"""Reconciliation looks listed job ids up in chunks of one fixed size, so its statement's text never changes (a new
text per pass stays prepared in SQLite's per-connection statement cache: the process grew with jobs x passes)."""

from __future__ import annotations

from proxy.ledger.reconcile import ID_CHUNK, id_chunks


def test_every_id_is_looked_up_in_chunks_of_one_size() -> None:
    for count in (0, 1, ID_CHUNK - 1, ID_CHUNK, ID_CHUNK + 1, 3 * ID_CHUNK + 17):
        ids = [f"job-{n}" for n in range(count)]
        chunks = list(id_chunks(ids))
        assert {len(chunk) for chunk in chunks} <= {ID_CHUNK}
        assert len(chunks) == -(-count // ID_CHUNK)
        assert [i for chunk in chunks for i in dict.fromkeys(chunk)] == ids  # each once, in order, padding aside
