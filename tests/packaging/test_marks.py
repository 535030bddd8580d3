"""The check that keeps the `slow` and `postgres` marks honest (tests/conftest.py) names the mark a test needs."""

from __future__ import annotations

from tests.conftest import _needed_marks


def test_servers_and_processes_need_slow_and_postgresql_needs_postgres() -> None:
    assert _needed_marks([["python3", "-m", "proxy.emulator.demo"]], set()) == {
        "slow": "it starts `python3 -m proxy.emulator.demo`"}
    assert _needed_marks([["vbp", "serve", "--port", "4000", "--host", "x"]], set()) == {
        "slow": "it starts `vbp serve --port 4000`"}
    assert _needed_marks([["fake-gcs-server-linux-amd64", "-scheme", "http"]], set()) == {
        "slow": "it starts `fake-gcs-server-linux-amd64 -scheme http`"}
    assert _needed_marks([["python", "examples/genai_batch.py"]], set()) == {
        "slow": "it starts `python examples/genai_batch.py`"}
    assert _needed_marks([["runuser", "-u", "postgres", "--", "initdb"]], set()) == {
        "postgres": "it starts PostgreSQL (runuser -u postgres --)"}
    assert _needed_marks([], {"vbp-emulator", "vbp-test-proxy"}) == {"slow": "it starts the emulator"}


def test_quick_processes_need_no_mark() -> None:
    assert _needed_marks([["git", "ls-files"], ["python", "-c", "print(1)"], ["gcc", "--version"]], set()) == {}
