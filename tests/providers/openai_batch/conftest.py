"""An emulator whose OpenAI and Azure stand-ins these tests call, its catalog, and its keys in the environment
(the client reads a deployment's key from the env var the catalog names)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from proxy.catalog.catalog import Catalog
from proxy.catalog.load import load_catalog
from proxy.emulator.stack import EmulatorStack

JOB_SECONDS = 0.4


@pytest.fixture(scope="module")
def stack() -> Iterator[EmulatorStack]:
    saved = dict(os.environ)
    with EmulatorStack(job_seconds=JOB_SECONDS) as running:
        os.environ.update(running.env)
        try:
            yield running
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="module")
def catalog(stack: EmulatorStack) -> Catalog:
    return load_catalog(stack.models_path)
