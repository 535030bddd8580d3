"""The proxy's credentials against the project's emulator: its generated service account and `/token`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from proxy.emulator.stack import EmulatorStack
from proxy.upstream import Upstream
from proxy.upstream.google_credentials import TokenSource

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorStack]:
    with EmulatorStack() as stack:
        yield stack


async def test_application_default_credentials_reach_the_emulated_vertex(
        emulator: EmulatorStack, make_upstream: Callable[..., Upstream], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(emulator.credentials_path))
    source = TokenSource.from_environment()
    url = f"{emulator.base_url}/v1/projects/my-project/locations/us-central1/batchPredictionJobs"
    try:
        reply = await make_upstream(tokens=source).send("GET", url, headers=[], body=None, idempotent=True)
        assert (reply.status, await reply.read()) == (200, b'{"batchPredictionJobs":[]}')
        assert source.refresh_count == 1
        # Without the injected token the same call is refused: the emulator really checks it.
        bare = await make_upstream().send("GET", url, headers=[], body=None, idempotent=True)
        assert bare.status == 401
        await bare.aclose()
    finally:
        source.close()
