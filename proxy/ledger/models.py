"""The ledger's tables, as typed SQLAlchemy 2 models on one metadata with a naming convention."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class ApiKey(Base):
    """A caller's key: only a hash of the secret and a short display prefix are stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Rotation keeps the previous secret valid until `previous_valid_until`.
    previous_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    previous_valid_until: Mapped[datetime | None]
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Scopes: lists of allowed values; an empty list means "any".
    projects: Mapped[list[Any]] = mapped_column(default=list)
    locations: Mapped[list[Any]] = mapped_column(default=list)
    models: Mapped[list[Any]] = mapped_column(default=list)
    operations: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Job(Base):
    """One Vertex batch prediction job seen through the proxy."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The full name Vertex answered, with the project number: projects/N/locations/L/batchPredictionJobs/ID.
    name: Mapped[str] = mapped_column(String(300), unique=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    project: Mapped[str] = mapped_column(String(100))
    project_number: Mapped[str | None] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(64))
    api_version: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(300))
    model_id: Mapped[str | None] = mapped_column(String(200), index=True)
    display_name: Mapped[str] = mapped_column(String(400), default="")
    input_format: Mapped[str | None] = mapped_column(String(32))
    input_uris: Mapped[list[Any]] = mapped_column(default=list)
    output_format: Mapped[str | None] = mapped_column(String(32))
    output_prefix: Mapped[str | None] = mapped_column(Text)
    output_directory: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(40), index=True)
    create_time: Mapped[datetime] = mapped_column(index=True)
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    update_time: Mapped[datetime | None]
    succeeded_count: Mapped[int | None] = mapped_column(BigInteger)
    failed_count: Mapped[int | None] = mapped_column(BigInteger)
    incomplete_count: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cancel_requested_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime]
    # Where the row came from: "create" through the proxy, or "reconcile" (adopted from upstream labels).
    origin: Mapped[str] = mapped_column(String(16), default="create")
    # The upstream batch provider the job lives at (`proxy.providers.registry`); "vertex" for the jobs of before.
    provider: Mapped[str] = mapped_column(String(32), default="vertex", server_default="vertex")
    next_poll_at: Mapped[datetime | None] = mapped_column(index=True)
    # The OpenAI door's batch this job runs (`openai_batches.id`), so reports name it by its batch id; None for
    # native jobs.
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The model catalog's deployment the job runs on (`proxy.catalog`); None for native-door jobs, which name their
    # project and location themselves.
    deployment: Mapped[str | None] = mapped_column(String(64), index=True)
    poll_failures: Mapped[int] = mapped_column(Integer, default=0)

    # Metering. `metering_state`: None while the job runs; "due" once it ended; "claimed" while one process
    # reads its outputs (until `claim_until`, under `claim_token`); "metered" or "unmeterable" when done.
    metering_state: Mapped[str | None] = mapped_column(String(16), index=True)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    claim_until: Mapped[datetime | None]
    metering_attempts: Mapped[int] = mapped_column(Integer, default=0)
    metering_error: Mapped[str | None] = mapped_column(Text)
    metered_at: Mapped[datetime | None]
    # The current figures (their history is in job_meterings). cost_status: priced | unpriced | unmeterable.
    cost_status: Mapped[str | None] = mapped_column(String(16), index=True)
    cost_pico: Mapped[int | None] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    candidates_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    thoughts_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    tool_use_prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    audio_prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    embedding_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    input_characters: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_succeeded: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_malformed: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_no_usage: Mapped[int] = mapped_column(BigInteger, default=0)

    events: Mapped[list[JobEvent]] = relationship(back_populates="job", order_by="JobEvent.id")


class JobEvent(Base):
    """A state seen for a job, when, and from where (create reply, a client's get or list, the poller)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16))
    seen_at: Mapped[datetime]
    detail: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="events")


class JobMetering(Base):
    """One metering or re-pricing of a job: what was read, what it came to, and with which prices.

    The newest row with `superseded_at` NULL is the job's current figure; a re-price supersedes, never deletes.
    """

    __tablename__ = "job_meterings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(16))  # meter | reprice
    cost_status: Mapped[str] = mapped_column(String(16))
    cost_pico: Mapped[int | None] = mapped_column(BigInteger)
    pricing_version: Mapped[str | None] = mapped_column(String(64))
    pricing_rows: Mapped[list[Any]] = mapped_column(default=list)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    objects: Mapped[list[Any]] = mapped_column(default=list)
    totals: Mapped[dict[str, Any]] = mapped_column(default=dict)
    malformed_examples: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str | None] = mapped_column(Text)
    superseded_at: Mapped[datetime | None]


class RequestLog(Base):
    """One call through the proxy. Never holds a key or a token."""

    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    request_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str | None] = mapped_column(String(32))
    team: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(32))
    api_version: Mapped[str | None] = mapped_column(String(16))
    job_name: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[int] = mapped_column(Integer)
    upstream_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)


class KeyEvent(Base):
    """The audit trail of keys: who (an admin key id, or `cli:<user>`) did what (create, revoke, rotate) to which
    key, and when. Never holds a secret or a hash of one."""

    __tablename__ = "key_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    team: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Team(Base):
    """A team's data policy: the Cloud Storage prefixes and BigQuery datasets its jobs may name (besides the
    VBP_TEAM_GCS_PREFIXES templates every team gets), and the create-body fields it may use beyond a Gemini
    batch job's. A team without a row has only the templates."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    gcs_prefixes: Mapped[list[Any]] = mapped_column(default=list)
    bq_datasets: Mapped[list[Any]] = mapped_column(default=list)
    allowed_fields: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


Index("ix_jobs_team_create_time", Job.team, Job.create_time)


class JobRollup(Base):
    """Sums of the metered jobs (those with a `cost_status`) per UTC create day, team, key, model, project,
    location, state, cost status, provider and deployment: what cost reports read instead of scanning every job.

    Kept exact by triggers on `jobs` (migrations 0004, 0013), whoever writes the jobs. `key_id` is '' for a job
    without a key, `model` is the model id (else the full model). Cost is kept as whole micro-dollars plus the remaining
    picodollars of priced jobs, so that no 64-bit sum can overflow below 9.2 trillion USD.
    """

    __tablename__ = "job_rollups"
    __table_args__ = {"sqlite_with_rowid": False}

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(300), primary_key=True)
    project: Mapped[str] = mapped_column(String(100), primary_key=True)
    location: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(40), primary_key=True)
    cost_status: Mapped[str] = mapped_column(String(16), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)  # migration 0013
    deployment: Mapped[str] = mapped_column(String(64), primary_key=True)  # '' for a native-door job
    jobs: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_pico_rest: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    candidates_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    thoughts_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    tool_use_prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_succeeded: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_malformed: Mapped[int] = mapped_column(BigInteger, default=0)


class OpenAIFile(Base):
    """A file of the OpenAI door: a caller's upload (purpose `batch`) kept in VBP_FILES_BUCKET with its converted
    Vertex input and line index. Output and error files are not rows: they are a batch's, served from its job."""

    __tablename__ = "openai_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # file-<hex>
    team: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(300))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(Integer)
    # Lines of the converted Vertex input: the same as `lines`, but one per input for embedding lines with several.
    vertex_lines: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(64))
    # gs:// URIs of the caller's bytes, the converted Vertex input and the custom_id index.
    input_uri: Mapped[str] = mapped_column(Text, unique=True)
    converted_uri: Mapped[str] = mapped_column(Text)
    index_uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # Where its batches run: `vertex` (converted lines), or `openai` / `azure` (the caller's lines kept unchanged).
    provider: Mapped[str] = mapped_column(String(32), default="vertex", server_default="vertex")


Index("ix_openai_files_team_created_at", OpenAIFile.team, OpenAIFile.created_at)


class OpenAIBatch(Base):
    """A batch of the OpenAI door and the Vertex job that runs it.

    The row is written before the job is created upstream (`job_pk` NULL until then); the job carries the batch id
    in a label, so reconciliation links a job whose create reply was lost. `errors` holds why a create failed.
    """

    __tablename__ = "openai_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # batch_<hex>
    team: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    input_file_id: Mapped[str] = mapped_column(ForeignKey("openai_files.id"), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), unique=True)
    output_file_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Sizes of the converted output and error files, known once a read has streamed one to its end.
    output_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    cancel_requested_at: Mapped[datetime | None]
    errors: Mapped[list[Any] | None] = mapped_column(JSON)

    job: Mapped[Job | None] = relationship()


Index("ix_openai_batches_team_created_at", OpenAIBatch.team, OpenAIBatch.created_at)
class Budget(Base):
    """A dollar limit on a team's jobs (`key_id` '') or one key's, per UTC calendar month or in total.

    Creates reserve against it before they reach the upstream (`proxy.budgets.reservation`); its row is the lock
    that keeps replicas from overspending together.
    """

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("team", "key_id", name="uq_budgets_team_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32), default="")  # '' for the team's own budget
    period: Mapped[str] = mapped_column(String(8))  # month | total
    limit_pico: Mapped[int] = mapped_column(BigInteger)
    # Whether jobs the proxy cannot estimate (BigQuery input, an unpriced model) may still be created under it.
    allow_unestimated: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class BudgetReservation(Base):
    """The estimate's `high` held against every budget covering a create, written before the upstream call.

    It is also the create's intent record: `held` (no job yet), `bound` to the job once recorded, `settled` when
    the job is metered (its cost then counts as spent instead), or `released` (the create failed, never happened,
    or the job could not be metered). The create stamps its id on the job as the `vbp-reservation` label.
    """

    __tablename__ = "budget_reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    project: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(64))
    amount_pico: Mapped[int] = mapped_column(BigInteger)
    low_pico: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")


Index("ix_budget_reservations_team_state", BudgetReservation.team, BudgetReservation.state)


class BudgetEvent(Base):
    """A budget crossing a threshold (80%), recorded once per budget and period: what the webhooks deliver."""

    __tablename__ = "budget_events"
    __table_args__ = (UniqueConstraint("budget_id", "period_start", "kind", name="uq_budget_events_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), index=True)
    period_start: Mapped[str] = mapped_column(String(10))  # YYYY-MM-01, or "total"
    kind: Mapped[str] = mapped_column(String(32))  # budget.threshold
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
class WebhookEndpoint(Base):
    """A URL a team's events are sent to, signed with its secret (Standard Webhooks `whsec_...`, shown once).

    `events`: the event types it receives (empty: all). A removed endpoint keeps its row (and its deliveries' log)
    with `removed_at` set, and receives nothing more."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(default=list)
    # The signing key itself: a webhook signature is an HMAC, so the proxy must hold the key (not a hash of it).
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    removed_at: Mapped[datetime | None]


class WebhookEvent(Base):
    """One event of the outbox, written in the transaction of the change it reports. `id` is the `webhook-id`
    every delivery of it carries, on every retry; `payload` is the body, `{"type", "timestamp", "data"}`.
    `dedupe_key` (unique) makes a second write of the same event (another path or replica) a no-op."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event to one endpoint: `pending` (due at `next_attempt_at`; claimed by one process until
    `claim_until`), then `delivered` (a 2xx) or `failed` (still failing `VBP_WEBHOOK_GIVE_UP_SECONDS` after
    `scheduled_at`, or its endpoint removed)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
                      UniqueConstraint("event_id", "endpoint_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    scheduled_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    claim_token: Mapped[str | None] = mapped_column(String(40))
    claim_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class PlacementTarget(Base):
    """A deployment placement chooses among (a catalog deployment, or a project/location of a native pool).

    Its row is the lock placements of it queue on across replicas (`proxy.placement.claims`), and it holds what
    every replica must agree on: the circuit breaker (consecutive failures, cooling down until `open_until`, one
    probe in flight until `probe_until`) and the upstream's own last enqueued-token figures.
    """

    __tablename__ = "placement_targets"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[datetime | None]
    probe_until: Mapped[datetime | None]
    last_outcome: Mapped[str] = mapped_column(String(16), default="")  # ok | failed | full | "" (none yet)
    last_outcome_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    reported_enqueued: Mapped[int | None] = mapped_column(BigInteger)
    reported_quota: Mapped[int | None] = mapped_column(BigInteger)
    reported_at: Mapped[datetime | None]


class Placement(Base):
    """Tokens held on a placement target by one create: `held` while the create is in flight, `placed` once its
    job is in the ledger (counted while the job is unfinished), `released` when the upstream refused it."""

    __tablename__ = "placements"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), index=True)
    team: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    tokens: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")


Index("ix_placements_target_state", Placement.target, Placement.state)
