"""What `vbp serve` checks before it creates or changes anything, in this order: the Google credentials, the pricing
table, the model catalog, the ledger's URL and driver, the port; only then is the ledger created or migrated.

Each failure is a `StartupError` whose message (one or two lines) names the setting or option to fix; the command
prints it and exits non-zero, having created nothing (no ledger file, no listening socket left behind).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from proxy.ledger.ledger_check import LedgerError, check_creatable, require_ledger
from proxy.settings import Settings

if TYPE_CHECKING:
    from proxy.catalog.catalog import Catalog

CREDENTIALS_SETTING = "GOOGLE_APPLICATION_CREDENTIALS"


class StartupError(Exception):
    """A reason the proxy cannot start; the message says what to set."""


def check_credentials(settings: Settings) -> None:
    """Google's application default credentials can be found (they are not refreshed here: no network call)."""
    import google.auth
    import google.auth.exceptions

    from proxy.upstream.google_credentials import CLOUD_PLATFORM

    try:
        google.auth.default(scopes=[CLOUD_PLATFORM])
    except google.auth.exceptions.DefaultCredentialsError as exc:
        configured = settings.google_credentials
        if configured:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StartupError(f"{CREDENTIALS_SETTING}={configured} cannot be used: {first}") from None
        raise StartupError(f"no Google credentials: set {CREDENTIALS_SETTING} to a service-account key file (or run "
                           "where gcloud's application default credentials or the metadata server are available).\n"
                           f"For the local stand-ins, `vbp emulator` prints the {CREDENTIALS_SETTING} to use."
                           ) from None


def check_pricing(settings: Settings) -> None:
    """The pricing table loads (the metering prices every job with it)."""
    from proxy.metering.pricing import PricingError, PricingTable

    try:
        PricingTable.load(settings.pricing_path)
    except PricingError as exc:
        raise StartupError(f"the pricing table cannot be loaded (VBP_PRICING_DIR): {exc}") from None


def check_catalog(settings: Settings) -> Catalog:
    """The model catalog (VBP_MODELS_FILE; the empty one when unset); a malformed one names its line and field."""
    from proxy.catalog.catalog import Catalog
    from proxy.catalog.load import CatalogError, load_catalog

    try:
        return load_catalog(settings.models_file) if settings.models_file else Catalog()
    except CatalogError as exc:
        raise StartupError(str(exc)) from None


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a port in use is found before anything is created."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror} (fix --host)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port, or stop "
                           "what uses it)") from None
    return sock


def prepare_ledger(settings: Settings) -> bool:
    """Check that the ledger can be opened or created; True when it does not exist yet. Creates nothing."""
    try:
        if settings.auto_migrate:
            return check_creatable(settings.database_url)
        # with migrations off, the ledger must already be there
        require_ledger(settings.database_url, settings.migrations_path)
        return False
    except LedgerError as exc:
        raise StartupError(str(exc) + ("" if settings.auto_migrate else " (VBP_AUTO_MIGRATE is off)")) from None


def preflight(settings: Settings, *, host: str, port: int) -> tuple[socket.socket, bool]:
    """Every check, in order; the bound socket and whether the ledger is new. The caller then migrates."""
    check_credentials(settings)
    if settings.poller_enabled:
        check_pricing(settings)
    check_catalog(settings)
    new = prepare_ledger(settings)
    return listen(host, port), new


def check_catalog_keeps_unfinished(settings: Settings) -> None:
    """After migrating: every deployment that still holds unfinished batches is in the catalog (VBP_MODELS_FILE)."""
    from proxy.ledger.engine import make_engine, make_sessionmaker
    from proxy.placement.removed import stranded, stranded_message

    catalog = check_catalog(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            found = stranded(session, catalog)
    finally:
        engine.dispose()
    if found:
        raise StartupError(stranded_message(found, catalog.source))
