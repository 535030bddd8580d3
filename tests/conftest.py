"""Shared fixtures: the real servers the tests run against, each started once per test run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from proxy.emulator.storage import FakeGcsServer
from tests.support.postgres import LocalPostgres


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcsServer]:
    """fake-gcs-server on loopback; STORAGE_EMULATOR_HOST points google-cloud-storage at it."""
    server = FakeGcsServer()
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    yield server
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL 15 server in a temporary folder, for the tests marked `postgres`."""
    server = LocalPostgres()
    server.start()
    yield server
    server.stop()
