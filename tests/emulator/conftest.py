"""One emulator stack per test module: fake-gcs-server plus the Vertex + token app on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from google.cloud import storage

from proxy.emulator.stack import EmulatorStack

JOB_SECONDS = 0.6
EXTRA_MODEL = "gemini-9.9-custom"


@pytest.fixture(scope="module")
def stack() -> Iterator[EmulatorStack]:
    with EmulatorStack(job_seconds=JOB_SECONDS, extra_models=[EXTRA_MODEL]) as running:
        yield running


@pytest.fixture(scope="module")
def bucket(stack: EmulatorStack) -> storage.Bucket:
    """A bucket in the stack's fake-gcs-server for inputs and outputs."""
    return stack.storage_client().create_bucket("emulator-tests")


@pytest.fixture(scope="module")
def http(stack: EmulatorStack) -> Iterator[httpx.Client]:
    """A plain HTTP client that carries a token the emulator issued."""
    with httpx.Client(base_url=stack.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {stack.issue_token()}"}) as client:
        yield client
