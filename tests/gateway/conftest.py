"""A proxy in front of the emulator with keys for a team and an admin, for the gateway's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxy.tenancy.keys import create_key
from tests.providers.vertex.conftest import ALIAS, LOCATION, Proxied, running

COLLECTION = f"/v1/projects/{ALIAS}/locations/{LOCATION}/batchPredictionJobs"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("gateway"), teams=("team-a",)) as env:
        with env.sessions.begin() as session:
            key, secret = create_key(session, team="platform", name="admin", admin=True)
            env.keys["admin"], env.key_ids["admin"] = secret, key.id
        yield env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses `gateway` runs against the emulator and a proxy server: it is `slow` (out of test-fast)."""
    for item in items:
        if "gateway" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
