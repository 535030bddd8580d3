"""Shared fixtures: the real servers the tests run against, each started once per test run."""

from __future__ import annotations

import os
import sys
import threading
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


# --- The marks are honest --------------------------------------------------------------------------------------
# `make test-fast` runs `-m "not slow and not postgres"`. A test outside those marks that starts the emulator, a
# proxy, fake-gcs-server, a `vbp` process, a browser or pip (in its own setup or call, fixtures included), or
# PostgreSQL, fails and says which mark it needs. Run in the fast lane, where the marked tests are left out, this
# catches every unmarked test that needs one of them, since nothing started earlier is there to hide it.
_SERVER_THREADS = {"vbp-emulator": "the emulator", "vbp-test-proxy": "a proxy server"}
_POSTGRES_PROGRAMS = {"pg_ctl", "initdb", "postgres"}
_SLOW_PROGRAMS = {"vbp", "fake-gcs-server", "chromium", "chromium-browser", "pip", "pip3"}
_SLOW_MODULES = ("proxy", "pip", "pytest", "ensurepip", "venv", "bench", "examples")
_started: list[list[str]] = []  # the argv (base names) of each process started since the test began


def _note_processes(event: str, args: tuple[object, ...]) -> None:
    if event == "subprocess.Popen":
        argv = args[1]
        _started.append([os.path.basename(str(w)) for w in (argv if isinstance(argv, list | tuple) else [argv])])


sys.addaudithook(_note_processes)


def _needed_marks(started: list[list[str]], threads: set[str]) -> dict[str, str]:
    """The marks a test needs for the processes and server threads it started: {mark: why}."""
    needs: dict[str, str] = {}
    for words in started:
        shown = " ".join(words[:4])
        module = words[words.index("-m") + 1] if "-m" in words[:-1] else ""
        if _POSTGRES_PROGRAMS & set(words):
            needs.setdefault("postgres", f"it starts PostgreSQL ({shown})")
        elif any(w.startswith(tuple(_SLOW_PROGRAMS)) for w in words[:1]) or _SLOW_PROGRAMS & set(words[:2]) \
                or module.startswith(_SLOW_MODULES) or any(w.endswith(".py") for w in words[1:2]):
            needs.setdefault("slow", f"it starts `{shown}`")
    for name in sorted(threads):
        needs.setdefault("slow", f"it starts {_SERVER_THREADS[name]}")
    return needs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    item.stash[_THREADS_BEFORE] = {t.name for t in threading.enumerate() if t.name in _SERVER_THREADS}
    _started.clear()
    yield


_THREADS_BEFORE = pytest.StashKey[set[str]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.when != "call" or not report.passed:
        return
    threads = {t.name for t in threading.enumerate() if t.name in _SERVER_THREADS} - item.stash[_THREADS_BEFORE]
    missing = {mark: why for mark, why in _needed_marks(list(_started), threads).items()
               if item.get_closest_marker(mark) is None}
    if missing:
        report.outcome = "failed"
        report.longrepr = "; ".join(f"mark this test `{mark}`: {why}" for mark, why in sorted(missing.items()))
