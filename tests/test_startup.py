"""`vbp serve` that cannot start says why in one or two lines naming what to fix, exits non-zero, and creates nothing:
each failure is a real `vbp serve` process in an empty folder (the default ledger would be `./vbp.db`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.emulator.oauth import ServiceAccount
from proxy.emulator.storage import free_port
from tests.support.postgres import LocalPostgres
from tests.support.processes import wait_until_serving

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account file: google-auth finds it without any network call (no token is asked for at start)."""
    path = tmp_path_factory.mktemp("google") / "service-account.json"
    ServiceAccount.generate(token_uri="http://127.0.0.1:9/token").write(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "here").mkdir()
    return tmp_path / "here"


def serve(folder: Path, credentials: Path | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`vbp serve` run from `folder`, with only the given VBP_ settings, until it exits."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VBP_", "GOOGLE_", "CLOUDSDK_"))}
    environ.update(HOME=str(folder.parent), CLOUDSDK_CONFIG=str(folder.parent / "gcloud"),
                   NO_GCE_CHECK="true")  # no gcloud file, no metadata server: nothing found but the file given
    if credentials is not None:
        environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(credentials)
    return subprocess.run([sys.executable, "-m", "proxy", "serve", "--port", str(free_port()), *args],
                          cwd=folder, env={**environ, **env}, capture_output=True, text=True, timeout=60)


def assert_fails_with(done: subprocess.CompletedProcess[str], *lines: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == list(lines)
    assert 1 <= len(lines) <= 2 and "Traceback" not in done.stderr and done.stdout == ""


def assert_nothing_created(folder: Path) -> None:
    assert list(folder.iterdir()) == []


def test_no_google_credentials(folder: Path) -> None:
    done = serve(folder, None)
    assert_fails_with(done, "Error: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
                            "key file (or run where gcloud's application default credentials or the metadata server "
                            "are available).",
                      "For the local stand-ins, `vbp emulator` prints the GOOGLE_APPLICATION_CREDENTIALS to use.")
    assert_nothing_created(folder)


def test_a_credentials_file_that_is_not_there(folder: Path) -> None:
    missing = folder.parent / "nowhere.json"
    assert_fails_with(serve(folder, missing),
                      f"Error: GOOGLE_APPLICATION_CREDENTIALS={missing} cannot be used: File {missing} was not found.")
    assert_nothing_created(folder)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("VBP_POLL_INTERVAL", "soon", "could not convert string to float: 'soon'"),
    ("VBP_POLL_INTERVAL", "-5", "must be a number of seconds of at least 0, not '-5'"),
    ("VBP_LOG_LEVEL", "loud", "must be one of debug, info, warning, error, critical, not 'loud'"),
    ("VBP_METER_PROCESSES", "0", "must be at least 1, not 0"),
    ("VBP_AUTO_MIGRATE", "perhaps", "not a boolean: 'perhaps'"),
])
def test_an_invalid_setting(folder: Path, credentials: Path, setting: str, value: str, message: str) -> None:
    assert_fails_with(serve(folder, credentials, **{setting: value}), f"Error: {setting} is not valid: {message}")
    assert_nothing_created(folder)


@pytest.mark.parametrize(("url", "message"), [
    ("nonsense", "Error: VBP_DATABASE_URL is not a database URL (e.g. sqlite:///vbp.db or "
                 "postgresql+psycopg://user:password@host/database)"),
    ("postgres://user:pw@127.0.0.1/x", "Error: VBP_DATABASE_URL: no database driver for 'postgres' (e.g. "
                                       "sqlite:///vbp.db or postgresql+psycopg://user:password@host/database)"),
    ("sqlite:////no/such/folder/vbp.db", "Error: cannot create the ledger at sqlite:////no/such/folder/vbp.db "
                                         "(VBP_DATABASE_URL): the folder /no/such/folder does not exist"),
])
def test_a_bad_database_url(folder: Path, credentials: Path, url: str, message: str) -> None:
    assert_fails_with(serve(folder, credentials, VBP_DATABASE_URL=url), message)
    assert_nothing_created(folder)


@pytest.mark.postgres
def test_a_postgresql_server_without_that_database(folder: Path, credentials: Path,
                                                   postgres_server: LocalPostgres) -> None:
    url = f"postgresql+psycopg://postgres:pw@127.0.0.1:{postgres_server.port}/absent_{os.getpid()}"
    done = serve(folder, credentials, VBP_DATABASE_URL=url)
    shown = url.replace(":pw@", ":***@")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1 and ":pw@" not in done.stderr
    assert done.stderr.startswith(f"Error: cannot open the ledger at {shown} (VBP_DATABASE_URL): ")
    assert f'database "absent_{os.getpid()}" does not exist' in done.stderr


def test_migrations_off_and_no_ledger(folder: Path, credentials: Path) -> None:
    shown = f"sqlite:///{folder / 'vbp.db'}"
    assert_fails_with(serve(folder, credentials, VBP_AUTO_MIGRATE="false"),
                      f"Error: no ledger at {shown}: the file does not exist. Set VBP_DATABASE_URL to the ledger "
                      "`vbp serve` uses (or run `vbp db upgrade` to create a new one). (VBP_AUTO_MIGRATE is off)")
    assert_nothing_created(folder)


def test_a_pricing_file_that_does_not_load(folder: Path, credentials: Path) -> None:
    pricing = folder.parent / "pricing"
    pricing.mkdir()
    (pricing / "gemini-x.toml").write_text('model = "gemini-x"\nkind = "generative"\n')
    assert_fails_with(serve(folder, credentials, VBP_PRICING_DIR=str(pricing)),
                      "Error: the pricing table cannot be loaded (VBP_PRICING_DIR): gemini-x.toml: missing unit, rates")
    (pricing / "gemini-x.toml").unlink()
    (pricing / "gemini-x.toml").mkdir()  # unreadable as a file, whoever runs the test (root reads anything else)
    assert_fails_with(serve(folder, credentials, VBP_PRICING_DIR=str(pricing)),
                      "Error: the pricing table cannot be loaded (VBP_PRICING_DIR): gemini-x.toml: cannot be read: "
                      "Is a directory")
    assert_fails_with(serve(folder, credentials, VBP_PRICING_DIR=str(folder.parent / "none")),
                      f"Error: the pricing table cannot be loaded (VBP_PRICING_DIR): pricing directory "
                      f"{folder.parent / 'none'} does not exist (set VBP_PRICING_DIR)")
    assert_nothing_created(folder)


def test_a_malformed_model_catalog_names_its_line_and_field(folder: Path, credentials: Path) -> None:
    catalog = folder.parent / "models.toml"
    catalog.write_text('[[deployment]]\nname = "vertex-flash"\nprovider = "vertex"\nmodel = "gemini-2.5-flash"\n'
                       'project = "my-project"\nlocation = "us-central1"\n\n'
                       '[[deployment]]\nname = "azure-eastus"\nprovider = "azur"\nmodel = "gpt-4o-mini"\n')
    message = (f"Error: {catalog}:10: deployment 'azure-eastus': field \"provider\": must be one of vertex, openai, "
               "azure, not 'azur'")
    assert_fails_with(serve(folder, credentials, VBP_MODELS_FILE=str(catalog)), message)
    assert_nothing_created(folder)
    # `vbp models` says the same, and exits 1 too
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VBP_")}
    done = subprocess.run([sys.executable, "-m", "proxy", "models"], cwd=folder, capture_output=True, text=True,
                          env={**environ, "VBP_MODELS_FILE": str(catalog)}, timeout=60)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [message])
    assert_fails_with(serve(folder, credentials, VBP_MODELS_FILE=str(folder.parent / "none.toml")),
                      f"Error: {folder.parent / 'none.toml'}: cannot read the model catalog (VBP_MODELS_FILE): "
                      f"[Errno 2] No such file or directory: '{folder.parent / 'none.toml'}'")
    assert_nothing_created(folder)


def test_a_port_in_use(folder: Path, credentials: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(folder, credentials, "--port", str(port))
    assert_fails_with(done, f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (choose another "
                            "--port, or stop what uses it)")
    assert_nothing_created(folder)


@pytest.fixture
def started(folder: Path, credentials: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VBP_")}
    environ.update(GOOGLE_APPLICATION_CREDENTIALS=str(credentials), VBP_RECONCILE_INTERVAL="0")
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], cwd=folder,
                               env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with process:  # closes its stderr pipe at the end
        try:
            yield process, port
        finally:
            process.terminate()
            process.wait(timeout=15)


def test_when_everything_is_right_it_names_the_new_ledger_and_serves(
        folder: Path, started: tuple[subprocess.Popen[str], int]) -> None:
    process, port = started
    wait_until_serving(process, f"http://127.0.0.1:{port}/readyz")
    assert (folder / "vbp.db").is_file()
    process.terminate()
    process.wait(timeout=15)
    assert process.stderr is not None
    assert process.stderr.readline() == f"ledger: sqlite:///{folder / 'vbp.db'} (new: creating it)\n"
