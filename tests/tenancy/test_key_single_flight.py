"""When a key's cache entry has lapsed, the requests that find it so together make one database lookup."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.tenancy.keys import KeyStore, create_key


def test_concurrent_lookups_of_one_key_share_a_single_query(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        key, secret = create_key(session, team="team-a")
        key_id = key.id
    queries: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_keys" in statement:
            queries.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    store = KeyStore(sessions, ttl=60)

    async def burst() -> list[Any]:
        return list(await asyncio.gather(*(store.lookup_shared(secret) for _ in range(25)),
                                         store.lookup_shared(secret + "x")))

    try:
        *found, unknown = asyncio.run(burst())
        assert len(queries) == 2  # one for the key, one for the unknown secret
        assert {p.key_id for p in found} == {key_id} and unknown is None
        assert store.cached(secret) == (True, found[0])
        # Finished lookups are not reused: the next burst (the entry lapsed again) queries afresh, once per secret.
        assert asyncio.run(burst())[0] == found[0] and len(queries) == 4
    finally:
        engine.dispose()
