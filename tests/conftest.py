"""Shared fixtures: the real servers the tests run against, each started once per test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from proxy.emulator.storage import FakeGcsServer
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
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


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger database: a SQLite file, then a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"t{next(_db_counter)}_{os.getpid()}")


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a ledger built from the migrations (never from create_all)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
