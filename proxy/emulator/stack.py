"""`EmulatorStack`: fake-gcs-server plus the Vertex + token app under uvicorn, in-process, on 127.0.0.1.

    with EmulatorStack(job_seconds=1) as stack:
        os.environ.update(stack.env)  # VBP_VERTEX_BASE_URL, STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS,
                                      # VBP_FILES_BUCKET (created empty), VBP_MODELS_FILE (the catalog),
                                      # VBP_EMULATOR_OPENAI_KEY, VBP_EMULATOR_AZURE_KEY
        stack.set_faults(latency=0.1)
        token = stack.issue_token()
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import uvicorn
from google.cloud import storage
from google.oauth2 import service_account

from proxy.emulator.app import create_app
from proxy.emulator.catalog import AZURE_KEY_ENV, OPENAI_KEY_ENV, write_catalog
from proxy.emulator.connection_faults import TransportInScope
from proxy.emulator.faults import Faults
from proxy.emulator.gcs import client_for, parse_object_gs
from proxy.emulator.oauth import ServiceAccount
from proxy.emulator.state import DEFAULT_AZURE_TOKEN_QUOTA, EmulatorState
from proxy.emulator.storage import FakeGcsServer
from proxy.emulator.storage_front import StorageFront

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
FILES_BUCKET = "vbp-files"  # the OpenAI door's VBP_FILES_BUCKET, made at start


class EmulatorStack:
    """The local Google stand-ins, started together and stopped together."""

    def __init__(self, *, port: int = 0, job_seconds: float = 8.0, extra_models: Sequence[str] = (),
                 token_lifetime: int = 3600, workdir: Path | None = None, gcs_port: int = 0,
                 gcs_root: Path | None = None, storage_faults: bool = False, files_bucket: str = FILES_BUCKET,
                 echo_keys: bool = True, openai_key: str | None = None, azure_key: str | None = None,
                 azure_token_quota: int = DEFAULT_AZURE_TOKEN_QUOTA, azure_quota_mode: str = "fail-fast") -> None:
        self.port = port
        self.openai_key = openai_key
        self.azure_key = azure_key
        self.azure_token_quota = azure_token_quota
        self.azure_quota_mode = azure_quota_mode
        self.files_bucket = files_bucket
        self.echo_keys = echo_keys
        self.job_seconds = job_seconds
        self.extra_models = tuple(extra_models)
        self.token_lifetime = token_lifetime
        self.workdir = workdir
        self.gcs_port = gcs_port
        self.gcs_root = gcs_root
        self.storage_faults = storage_faults
        self.gcs: FakeGcsServer | None = None
        self._front: _Served | None = None
        self._state: EmulatorState | None = None
        self._vertex: _Served | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._storage: storage.Client | None = None  # see storage_client()
        self._storage_lock = threading.Lock()

    # --- life cycle ----------------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> EmulatorStack:
        """Start fake-gcs-server and the app, write the service-account file; returns self."""
        if self._vertex is not None:
            raise RuntimeError("the emulator is already running")
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vbp-emulator-")
            self.workdir = Path(self._tmp.name)
        # Absolute, so the printed GOOGLE_APPLICATION_CREDENTIALS works from any folder.
        self.workdir = self.workdir.resolve()
        self.gcs = FakeGcsServer(port=self.gcs_port or None, root=self.gcs_root)
        self.gcs.start()
        sock = _bound(self.port)
        self.port = int(sock.getsockname()[1])
        account = ServiceAccount.generate(token_uri=f"{self.base_url}/token")
        account.write(self.credentials_path)
        self._state = EmulatorState(account=account, gcs_url=self.gcs.url, job_seconds=self.job_seconds,
                                    extra_models=self.extra_models, token_lifetime=self.token_lifetime,
                                    storage_front=self.storage_faults, echo_keys=self.echo_keys,
                                    openai_key=self.openai_key, azure_key=self.azure_key,
                                    azure_token_quota=self.azure_token_quota, azure_quota_mode=self.azure_quota_mode)
        write_catalog(self.models_path, base_url=self.base_url, project=account.project_id,
                      azure_token_quota=self.azure_token_quota)
        if self.storage_faults:
            self._front = _Served(StorageFront(self.gcs.url, self._state.faults), _bound(0), "vbp-emulator-storage",
                                  timeout, lifespan="on")
        self._vertex = _Served(create_app(self._state), sock, "vbp-emulator", timeout)
        client = self.storage_client()
        if client.lookup_bucket(self.files_bucket) is None:
            client.create_bucket(self.files_bucket)

    def stop(self) -> None:
        """Stop the jobs, the HTTP servers and fake-gcs-server; remove the generated files."""
        if self._state is not None:
            self._state.stop_runners()
        with self._storage_lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None
        for served in (self._vertex, self._front):
            if served is not None:
                served.stop()
        self._vertex = self._front = None
        if self.gcs is not None:
            self.gcs.stop()
            self.gcs = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.workdir = None

    def __enter__(self) -> EmulatorStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- what clients need ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`: the Vertex API root (`/v1/...`) and the token endpoint (`/token`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        """Where clients reach Cloud Storage: the front when storage faults are on, else fake-gcs-server itself."""
        if self.gcs is None:
            raise RuntimeError("the emulator is not started")
        return self._front.url if self._front is not None else self.gcs.url

    @property
    def credentials_path(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("the emulator is not started")
        return self.workdir / "service-account.json"

    @property
    def models_path(self) -> Path:
        """The generated model catalog (`VBP_MODELS_FILE`)."""
        if self.workdir is None:
            raise RuntimeError("the emulator is not started")
        return self.workdir / "models.toml"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI stand-in's base URL, for `openai.OpenAI(base_url=...)`."""
        return f"{self.base_url}/openai-api/v1"

    def azure_endpoint(self, resource: str) -> str:
        """An Azure resource's endpoint (`eastus`, `westus`, `swedencentral`), for `AzureOpenAI(azure_endpoint=)`."""
        return f"{self.base_url}/azure/{resource}"

    @property
    def env(self) -> dict[str, str]:
        """The environment that points the proxy and any Google client at the stand-ins."""
        if self.gcs is None:
            raise RuntimeError("the emulator is not started")
        return {
            "VBP_VERTEX_BASE_URL": self.base_url,
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.credentials_path),
            "VBP_FILES_BUCKET": self.files_bucket,
            "VBP_MODELS_FILE": str(self.models_path),
            OPENAI_KEY_ENV: self.state.openai_key,
            AZURE_KEY_ENV: self.state.azure_key,
        }

    @property
    def state(self) -> EmulatorState:
        """In-process access to the jobs, the request log and the faults."""
        if self._state is None:
            raise RuntimeError("the emulator is not started")
        return self._state

    @property
    def request_log(self) -> list[dict[str, Any]]:
        return self.state.request_log

    @property
    def project_id(self) -> str:
        """The project of the generated service account."""
        return self.state.account.project_id

    def set_faults(self, faults: Faults | dict[str, Any] | None = None, **fields: Any) -> Faults:
        """Replace the fault set (see `proxy.emulator.faults`)."""
        return self.state.set_faults(faults, **fields)

    def reset(self) -> None:
        """Clear the request log and the faults."""
        self.state.reset()

    def issue_token(self, lifetime: float | None = None) -> str:
        """An access token the emulator accepts, for tests that call it directly."""
        return self.state.tokens.issue(lifetime)

    def credentials(self) -> service_account.Credentials:
        """google-auth credentials from the generated file (they refresh against `/token`)."""
        return service_account.Credentials.from_service_account_file(
            str(self.credentials_path), scopes=[CLOUD_PLATFORM_SCOPE])

    def storage_client(self) -> storage.Client:
        """The google-cloud-storage client for the emulator's fake-gcs-server: one per stack, closed by `stop`.
        (A client made per call and left to the garbage collector kept its socket open until a full collection,
        which pytest then reported, as an unclosed socket, against whichever test was running.)"""
        with self._storage_lock:
            if self.gcs is None:
                raise RuntimeError("the emulator is not started")
            if self._storage is None:
                self._storage = client_for(self.storage_url, self.project_id)
            return self._storage

    def upload(self, source: Path, uri: str) -> None:
        """Copy a local file to `gs://bucket/path` in the local Cloud Storage, making the bucket if needed."""
        bucket_name, path = parse_object_gs(uri)
        client = self.storage_client()
        bucket = client.lookup_bucket(bucket_name) or client.create_bucket(bucket_name)
        bucket.blob(path).upload_from_filename(str(source))


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class _Served:
    """An ASGI app under uvicorn on a bound socket, in a daemon thread named `name`."""

    def __init__(self, app: Any, sock: socket.socket, name: str, timeout: float, *,
                 lifespan: Literal["on", "off"] = "off") -> None:
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan,
                                timeout_graceful_shutdown=2, http=TransportInScope)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator's HTTP server {name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
