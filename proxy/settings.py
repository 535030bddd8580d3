"""Every setting of the proxy, in one declarative table.

The README's settings section is checked against `SETTINGS` by a test, so a setting cannot be added
here without being documented, nor documented after it is gone.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, parser and the sentence that documents it."""

    env: str
    attr: str
    default: str | None
    parse: Callable[[str], Any]
    help: str


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _aliases(text: str) -> dict[str, str]:
    """Parse `alias=real,alias2=real2`."""
    aliases: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        alias, sep, real = part.partition("=")
        if not sep or not alias.strip() or not real.strip():
            raise ValueError(f"VBP_PROJECT_ALIASES entry {part!r} is not alias=project")
        aliases[alias.strip()] = real.strip()
    return aliases


def parse_project_locations(text: str) -> tuple[tuple[str, str], ...]:
    """`proj-a/us-central1,proj-b/europe-west4` -> (("proj-a", "us-central1"), ...); ValueError if malformed."""
    from proxy.providers.vertex.resources import valid_location, valid_project

    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        project, sep, location = part.partition("/")
        if not sep or not valid_project(project) or not valid_location(location):
            raise ValueError(f"{part!r} is not project/location (e.g. my-project/us-central1)")
        pairs.append((project, location))
    return tuple(pairs)


def parse_project_pools(text: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """`pool-a=proj-a/us-central1,proj-b/europe-west4;pool-b=...` -> {"pool-a": (("proj-a", "us-central1"), ...)}."""
    from proxy.providers.vertex.resources import valid_project

    pools: dict[str, tuple[tuple[str, str], ...]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, members = part.partition("=")
        name = name.strip()
        if not sep or not valid_project(name):
            raise ValueError(f"{part!r} is not pool=project/location,... (e.g. pool-gemini=proj-a/us-central1)")
        pairs = parse_project_locations(members)
        if not pairs:
            raise ValueError(f"the pool {name!r} names no project/location")
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"the pool {name!r} names a project/location twice")
        pools[name] = pairs
    return pools


def _team_templates(text: str) -> tuple[str, ...]:
    from proxy.tenancy.team_policy import parse_templates

    return parse_templates(text)


def _cache_seconds(text: str) -> float:
    """0-60 seconds: the promise that a team policy change reaches every replica within a minute."""
    seconds = _seconds(text)
    if seconds > 60:
        raise ValueError(f"must be between 0 and 60 seconds, not {text}")
    return seconds


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.0.0.0/8, 192.168.1.7, ::1` -> the networks (a bare address is a network of one); ValueError if not."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _seconds(text: str) -> float:
    """A number of seconds: finite and not negative."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number of seconds of at least 0, not {text!r}")
    return value


def _count(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _days(text: str) -> int:
    """A whole number of days, at least 0."""
    value = int(text)
    if value < 0:
        raise ValueError(f"must be a number of days of at least 0, not {value}")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {text!r}")
    return level


def _location(text: str) -> str:
    from proxy.providers.vertex.resources import valid_location

    if not valid_location(text.strip()):
        raise ValueError(f"{text!r} is not a Vertex location (e.g. us-central1)")
    return text.strip()


def _optional_str(text: str) -> str | None:
    return text.strip() or None


def _processes(text: str) -> int | None:
    """A count of worker processes, at least 1; empty: one per CPU (None)."""
    if not text.strip():
        return None
    count = int(text)
    if count < 1:
        raise ValueError(f"must be at least 1, not {count}")
    return count


SETTINGS: tuple[Setting, ...] = (
    Setting("VBP_DATABASE_URL", "database_url", "sqlite:///vbp.db", str,
            "SQLAlchemy URL of the ledger: SQLite by default, `postgresql+psycopg://user:pw@host/db` in production."),
    Setting("VBP_VERTEX_BASE_URL", "vertex_base_url", None, _optional_str,
            "Unset: each call goes to the real Google host of its location. Set: every call goes to this base URL "
            "(the emulator, or a private endpoint)."),
    Setting("VBP_PROJECT_ALIASES", "project_aliases", "", _aliases,
            "Comma-separated `alias=project` pairs rewritten in paths and request bodies, "
            "e.g. `your-project=my-real-project`."),
    Setting("VBP_PROJECT_POOLS", "project_pools", "", parse_project_pools,
            "Semicolon-separated pools, each `pool=project/location,project/location,...`: a native create naming "
            "the pool as its project is placed on one of its members (the location the caller wrote is not used), "
            "e.g. `pool-gemini=proj-a/us-central1,proj-b/europe-west4`."),
    Setting("VBP_TEAM_GCS_PREFIXES", "team_gcs_prefixes", "", _team_templates,
            "Comma-separated `gs://bucket/prefix/` templates every team may read and write, `{team}` standing for "
            "the team's name, e.g. `gs://batch-data/{team}/`; a template without `{team}` gives every team that "
            "whole location. Unset: no gs:// location is allowed except a team's own (`vbp teams set`)."),
    Setting("VBP_TEAM_CACHE_SECONDS", "team_cache_seconds", "30", _cache_seconds,
            "How long one process trusts a team's data policy (0-60): a `vbp teams set` reaches every replica "
            "within this many seconds."),
    Setting("VBP_POLL_INTERVAL", "poll_interval", "30", _seconds,
            "Seconds between completion checks of unfinished jobs (young jobs are checked at this pace, "
            "older ones less often)."),
    Setting("VBP_MAX_BODY_BYTES", "max_body_bytes", "1048576", _count,
            "Largest create (or cancel) body accepted; a larger one is refused with 413 before it reaches Vertex."),
    Setting("VBP_UPSTREAM_TIMEOUT", "upstream_timeout", "60", _seconds,
            "Seconds to wait for Vertex's reply before answering 504 DEADLINE_EXCEEDED."),
    Setting("VBP_UPSTREAM_CONNECT_TIMEOUT", "upstream_connect_timeout", "10", _seconds,
            "Seconds to wait for a connection to Vertex before answering 503 UNAVAILABLE."),
    Setting("VBP_UPSTREAM_MAX_CONNECTIONS", "upstream_max_connections", "100", _count,
            "Most connections open to Vertex at once; more concurrent calls wait for one (within the timeouts)."),
    Setting("VBP_UPSTREAM_KEEPALIVE_SECONDS", "upstream_keepalive_seconds", "15", _seconds,
            "Seconds an idle connection to Vertex is kept for reuse; the busiest are reused first, so the ones a "
            "burst opened close after this."),
    Setting("VBP_RETRY_ATTEMPTS", "retry_attempts", "4", _count,
            "Most attempts for a read (GET) that meets 429, 503 or a connect error; creates are never retried."),
    Setting("VBP_RETRY_MAX_SECONDS", "retry_max_seconds", "10", _seconds,
            "Longest total time spent backing off between those attempts."),
    Setting("VBP_KEY_CACHE_SECONDS", "key_cache_seconds", "5", _seconds,
            "How long one process trusts a key lookup: a revoked key stops working on every replica within "
            "this many seconds."),
    Setting("VBP_REQUEST_LOG_DAYS", "request_log_days", "30", _days,
            "Days the request log keeps a row; older rows are deleted hourly inside `vbp serve`, in batches, by one "
            "replica at a time (0: kept forever)."),
    Setting("VBP_AUTO_MIGRATE", "auto_migrate", "true", _bool,
            "Apply database migrations when `vbp serve` starts."),
    Setting("VBP_POLLER", "poller_enabled", "true", _bool,
            "Run the completion poller (and metering) inside `vbp serve`."),
    Setting("VBP_RECONCILE_INTERVAL", "reconcile_interval", "300", _seconds,
            "Seconds between reconciliation passes inside `vbp serve` (0: none); a pass adopts jobs found upstream "
            "with the proxy's labels but missing from the ledger."),
    Setting("VBP_RECONCILE_PROJECTS", "reconcile_projects", "", parse_project_locations,
            "Comma-separated `project/location` pairs (aliases allowed) that reconciliation lists besides the pairs "
            "of the ledger's jobs, e.g. `your-project/us-central1`."),
    Setting("VBP_RECONCILE_MIN_AGE", "reconcile_min_age", "60", _seconds,
            "Reconciliation leaves jobs younger than this many seconds to the create still recording them."),
    Setting("VBP_ESTIMATE_SECONDS", "estimate_seconds", "20", _seconds,
            "How long an estimate may read a batch's input before a create under a budget (or `POST "
            "/v1/estimates`); what is left unread is bounded from its size."),
    Setting("VBP_RESERVATION_GRACE", "reservation_grace", "900", _seconds,
            "Reconciliation releases a budget reservation whose create recorded no job, and whose job it cannot "
            "find upstream, once it is older than this many seconds (longer than any create can take)."),
    Setting("VBP_METERING_LEASE_SECONDS", "metering_lease_seconds", "120", _seconds,
            "How long a claim on a job being metered lasts without renewal; a process that dies mid-read "
            "leaves the job to another after this many seconds."),
    Setting("VBP_METER_PROCESSES", "meter_processes", None, _processes,
            "Worker processes that meter a large job's output in parallel, by byte range (a second pool of as "
            "many converts a large OpenAI-door output file the same way). Unset: one per CPU; 1: every output is "
            "metered and converted in the serving process."),
    Setting("VBP_METER_RANGE_MB", "meter_range_mb", "32", _count,
            "Smallest byte range (in MiB) a metering worker reads; outputs under twice this are metered in the "
            "serving process, where starting workers would cost more than it saves."),
    Setting("VBP_PRICING_DIR", "pricing_dir", None, _optional_str,
            "Folder of the pricing TOML files; unset: the tables shipped with the proxy (the repository's `pricing/` "
            "folder, which the wheel carries inside the package)."),
    Setting("VBP_MIGRATIONS_DIR", "migrations_dir", None, _optional_str,
            "Folder of the Alembic migrations; unset: the migrations shipped with the proxy (the repository's "
            "`migrations/` folder, which the wheel carries inside the package)."),
    Setting("VBP_SESSION_SECRET", "session_secret", None, _optional_str,
            "Key that signs dashboard session cookies (HMAC-SHA256). Unset: a random key per process, so sign-ins "
            "end on restart and do not carry across replicas: set the same value on every replica."),
    Setting("VBP_SESSION_SECONDS", "session_seconds", "43200", _seconds,
            "How long a dashboard sign-in lasts, in seconds."),
    Setting("VBP_REPORT_CACHE_SECONDS", "report_cache_seconds", "10", _cache_seconds,
            "How long one process reuses a cost report (`/v1/costs`, the CSV export) or a dashboard page for the "
            "same caller and query (0-60; 0: never): a job metered meanwhile shows within this many seconds."),
    Setting("VBP_TRUSTED_PROXIES", "trusted_proxies", "", parse_networks,
            "Comma-separated IP addresses or CIDR networks of the TLS terminators / load balancers in front of the "
            "proxy: only from these is `X-Forwarded-Proto: https` believed (the dashboard's cookie is then `Secure` "
            "and its origin `https://`). Empty: trust none."),
    Setting("VBP_METRICS_TOKEN", "metrics_token", None, _optional_str,
            "Set: `/metrics` answers only requests with `Authorization: Bearer <this token>` (401 otherwise). "
            "Unset: `/metrics` is open."),
    Setting("VBP_FILES_BUCKET", "files_bucket", None, _optional_str,
            "Cloud Storage bucket of the OpenAI door: uploaded files, their converted Vertex input and the batches' "
            "outputs, under `{team}/openai/`. Unset: the OpenAI door's routes answer 503 naming this setting."),
    Setting("VBP_DEFAULT_PROJECT", "default_project", None, _optional_str,
            "Project the OpenAI door's batches run in. Unset: the project of the injected Google credentials."),
    Setting("VBP_DEFAULT_LOCATION", "default_location", "us-central1", _location,
            "Location the OpenAI door's batches run in."),
    Setting("VBP_OPENAI_MAX_FILE_LINES", "openai_max_file_lines", "50000", _count,
            "Most requests in one OpenAI batch file; a longer file is refused with 400 and nothing is stored."),
    Setting("VBP_MODELS_FILE", "models_file", None, _optional_str,
            "The model catalog (TOML `[[deployment]]` tables): every Vertex, OpenAI and Azure OpenAI deployment the "
            "OpenAI door may run a batch on, by model. Unset: Gemini models on Vertex in `VBP_DEFAULT_PROJECT` / "
            "`VBP_DEFAULT_LOCATION`."),
    Setting("VBP_OPENAI_MAX_FILE_BYTES", "openai_max_file_bytes", "209715200", _count,
            "Largest OpenAI batch file in bytes (200 MiB); the upload stops being read past it and is refused (400)."),
    Setting("VBP_WEBHOOK_ALLOW_LOOPBACK", "webhook_allow_loopback", "false", _bool,
            "Development only: webhook URLs may be plain `http://` to a loopback address (127.0.0.0/8, ::1, "
            "localhost). Off: every webhook URL is `https://` to a public address."),
    Setting("VBP_WEBHOOK_ALLOWED_NETWORKS", "webhook_allowed_networks", "", parse_networks,
            "Comma-separated IP addresses or CIDR networks a webhook URL may resolve to although they are private, "
            "loopback, link-local or a cloud metadata address (checked at registration and at every delivery)."),
    Setting("VBP_WEBHOOK_TIMEOUT", "webhook_timeout", "10", _seconds,
            "Seconds a webhook delivery may take (connect and reply); a slower endpoint counts as a failed try."),
    Setting("VBP_WEBHOOK_FIRST_RETRY_SECONDS", "webhook_first_retry_seconds", "30", _seconds,
            "Seconds before the first retry of a failed webhook delivery; each later retry waits twice as long."),
    Setting("VBP_WEBHOOK_GIVE_UP_SECONDS", "webhook_give_up_seconds", "86400", _seconds,
            "A delivery still failing this many seconds after its first try is marked failed (`vbp webhooks "
            "deliveries --failed`; an admin can redeliver it)."),
    Setting("VBP_LOG_LEVEL", "log_level", "info", _log_level,
            "Python logging level of the proxy: debug, info, warning, error."),
    # Google's own convention, read by google-auth; the proxy reads it only to name it in a start-up error.
    Setting("GOOGLE_APPLICATION_CREDENTIALS", "google_credentials", None, _optional_str,
            "Google's application default credentials: a service-account file (else the metadata server). This is "
            "what the proxy injects."),
)


def shipped(folder: str) -> Path:
    """`pricing` or `migrations` as shipped: the repository's top-level folder in a checkout (edits seen at once),
    else the copy the build puts inside the package (`proxy/_data/`, see setup.py)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / folder).is_dir():
        return checkout / folder
    return Path(str(resources.files("proxy").joinpath("_data", folder)))


_BY_ATTR = {setting.attr: setting for setting in SETTINGS}


def default(attr: str) -> Any:
    """The parsed default of one setting of the table (None when it has none): the only place defaults are stated,
    read by the dataclass below and by the classes whose own defaults are a setting's."""
    setting = _BY_ATTR[attr]
    return None if setting.default is None else setting.parse(setting.default)


class MissingSecret(LookupError):
    """A deployment's credential env var is unset or empty (the message names the variable, never a value)."""


def deployment_secret(env_name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of the env var a catalog deployment names for its key (`api_key_env`); MissingSecret when unset.

    Upstream keys are read here, like every other setting, and only handed to the upstream client: never logged,
    never returned to a caller."""
    value = (os.environ if environ is None else environ).get(env_name, "")
    if not value:
        raise MissingSecret(f"the env var {env_name} (a deployment's api_key_env) is not set")
    return value


def _from_table(attr: str, *, shown: bool = True) -> Any:
    """A dataclass field whose default is the table's, parsed afresh for each instance (some are dicts)."""
    return field(default_factory=partial(default, attr), repr=shown)


@dataclass(frozen=True)
class Settings:
    """The parsed settings; build with `Settings.from_env()` or pass overrides in tests."""

    database_url: str = _from_table("database_url")
    vertex_base_url: str | None = _from_table("vertex_base_url")
    project_aliases: dict[str, str] = _from_table("project_aliases")
    project_pools: dict[str, tuple[tuple[str, str], ...]] = _from_table("project_pools")
    team_gcs_prefixes: tuple[str, ...] = _from_table("team_gcs_prefixes")
    team_cache_seconds: float = _from_table("team_cache_seconds")
    poll_interval: float = _from_table("poll_interval")
    max_body_bytes: int = _from_table("max_body_bytes")
    upstream_timeout: float = _from_table("upstream_timeout")
    upstream_connect_timeout: float = _from_table("upstream_connect_timeout")
    upstream_max_connections: int = _from_table("upstream_max_connections")
    upstream_keepalive_seconds: float = _from_table("upstream_keepalive_seconds")
    retry_attempts: int = _from_table("retry_attempts")
    retry_max_seconds: float = _from_table("retry_max_seconds")
    key_cache_seconds: float = _from_table("key_cache_seconds")
    request_log_days: int = _from_table("request_log_days")
    auto_migrate: bool = _from_table("auto_migrate")
    poller_enabled: bool = _from_table("poller_enabled")
    reconcile_interval: float = _from_table("reconcile_interval")
    reconcile_projects: tuple[tuple[str, str], ...] = _from_table("reconcile_projects")
    reconcile_min_age: float = _from_table("reconcile_min_age")
    estimate_seconds: float = _from_table("estimate_seconds")
    reservation_grace: float = _from_table("reservation_grace")
    metering_lease_seconds: float = _from_table("metering_lease_seconds")
    meter_processes: int | None = _from_table("meter_processes")
    meter_range_mb: int = _from_table("meter_range_mb")
    pricing_dir: str | None = _from_table("pricing_dir")
    migrations_dir: str | None = _from_table("migrations_dir")
    session_secret: str | None = _from_table("session_secret", shown=False)
    session_seconds: float = _from_table("session_seconds")
    report_cache_seconds: float = _from_table("report_cache_seconds")
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _from_table("trusted_proxies")
    metrics_token: str | None = _from_table("metrics_token", shown=False)
    files_bucket: str | None = _from_table("files_bucket")
    default_project: str | None = _from_table("default_project")
    default_location: str = _from_table("default_location")
    openai_max_file_lines: int = _from_table("openai_max_file_lines")
    openai_max_file_bytes: int = _from_table("openai_max_file_bytes")
    models_file: str | None = _from_table("models_file")
    webhook_allow_loopback: bool = _from_table("webhook_allow_loopback")
    webhook_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _from_table(
        "webhook_allowed_networks")
    webhook_timeout: float = _from_table("webhook_timeout")
    webhook_first_retry_seconds: float = _from_table("webhook_first_retry_seconds")
    webhook_give_up_seconds: float = _from_table("webhook_give_up_seconds")
    log_level: str = _from_table("log_level")
    google_credentials: str | None = _from_table("google_credentials")

    @property
    def pricing_path(self) -> Path:
        """The folder of the pricing TOML files: VBP_PRICING_DIR, else the one shipped with the code."""
        return Path(self.pricing_dir) if self.pricing_dir else shipped("pricing")

    @property
    def migrations_path(self) -> Path:
        """The folder of the Alembic migrations: VBP_MIGRATIONS_DIR, else the one shipped with the code."""
        return Path(self.migrations_dir) if self.migrations_dir else shipped("migrations")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting of `SETTINGS` from the environment; keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env, setting.default)
            if raw is None:
                values[setting.attr] = None
                continue
            try:
                values[setting.attr] = setting.parse(raw)
            except ValueError as exc:
                raise ValueError(f"{setting.env} is not valid: {exc}") from exc
        values.update(overrides)
        return cls(**values)
