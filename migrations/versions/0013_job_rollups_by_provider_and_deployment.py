"""job_rollups by provider and deployment: two more grouping keys, for reports `--by provider` / `--by deployment`

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 13:00:00.000000

The rollup of 0004 gains `provider` (jobs.provider) and `deployment` (jobs.deployment, '' for a native-door job,
which names no catalog deployment). Its primary key changes, so the table is made again: the triggers are dropped,
the table re-created and filled from `jobs`, and the triggers created again with the two keys (watching the two
columns too). Downgrade goes back to the keys of 0004 the same way.

The trigger text is generated here, not imported from 0004: a migration is a snapshot and must not change when
another one does.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEYS = ("day", "team", "key_id", "model", "project", "location", "state", "cost_status")
NEW_KEYS = (*OLD_KEYS, "provider", "deployment")
MEASURES = ("jobs", "cost_micro", "cost_pico_rest", "prompt_tokens", "cached_tokens", "candidates_tokens",
            "thoughts_tokens", "tool_use_prompt_tokens", "lines_succeeded", "lines_failed", "lines_malformed")
OLD_WATCHED = ("cost_status", "cost_pico", "prompt_tokens", "cached_tokens", "candidates_tokens", "thoughts_tokens",
               "tool_use_prompt_tokens", "lines_succeeded", "lines_failed", "lines_malformed", "team", "key_id",
               "model_id", "model", "project", "location", "state", "create_time")
NEW_WATCHED = (*OLD_WATCHED, "provider", "deployment")
SPLIT = 1_000_000  # cost in whole micro-dollars + the remaining picodollars
TRIGGERS = ("job_rollups_insert", "job_rollups_update", "job_rollups_delete")


def _day(row: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"to_char({row}.create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"substr({row}.create_time, 1, 10)"  # UtcDateTime is text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC


def _keys(row: str, dialect: str, keys: tuple[str, ...]) -> list[str]:
    values = [_day(row, dialect), f"{row}.team", f"coalesce({row}.key_id, '')",
              f"coalesce({row}.model_id, {row}.model)", f"{row}.project", f"{row}.location", f"{row}.state",
              f"{row}.cost_status"]
    if "provider" in keys:
        values += [f"{row}.provider", f"coalesce({row}.deployment, '')"]
    return values


def _measures(row: str) -> list[str]:
    cost = f"coalesce({row}.cost_pico, 0)"
    priced = f"{row}.cost_status = 'priced'"
    return ["1", f"CASE WHEN {priced} THEN {cost} / {SPLIT} ELSE 0 END",
            # no `%`: it would need escaping for the PostgreSQL driver
            f"CASE WHEN {priced} THEN {cost} - {cost} / {SPLIT} * {SPLIT} ELSE 0 END",
            *(f"{row}.{name}" for name in MEASURES[3:])]


def _match(row: str, dialect: str, keys: tuple[str, ...]) -> str:
    return " AND ".join(f"{key} = {value}" for key, value in zip(keys, _keys(row, dialect, keys), strict=True))


def _add(row: str, dialect: str, keys: tuple[str, ...]) -> str:
    target = "job_rollups." if dialect == "postgresql" else ""
    values = ", ".join(_keys(row, dialect, keys) + _measures(row))
    sums = ", ".join(f"{m} = {target}{m} + excluded.{m}" for m in MEASURES)
    # SQLite needs the WHERE to tell the upsert's ON from a join's.
    return (f"INSERT INTO job_rollups ({', '.join(keys + MEASURES)}) SELECT {values} WHERE {row}.cost_status IS NOT "
            f"NULL ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sums}")


def _take_out(row: str, dialect: str, keys: tuple[str, ...]) -> list[str]:
    minus = ", ".join(f"{m} = {m} - {v}" for m, v in zip(MEASURES, _measures(row), strict=True))
    return [f"UPDATE job_rollups SET {minus} WHERE {_match(row, dialect, keys)}",
            f"DELETE FROM job_rollups WHERE jobs = 0 AND {_match(row, dialect, keys)}"]


def _changed(dialect: str, watched: tuple[str, ...]) -> str:
    if dialect == "postgresql":
        return (f"({', '.join('OLD.' + c for c in watched)}) IS DISTINCT FROM "
                f"({', '.join('NEW.' + c for c in watched)})")
    return "(" + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in watched) + ")"


def _sqlite_triggers(keys: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    update_body = ";\n  ".join([*_take_out("OLD", "sqlite", keys), _add("NEW", "sqlite", keys)])
    delete_body = ";\n  ".join(_take_out("OLD", "sqlite", keys))
    return [
        f"CREATE TRIGGER job_rollups_insert AFTER INSERT ON jobs WHEN NEW.cost_status IS NOT NULL\n"
        f"BEGIN\n  {_add('NEW', 'sqlite', keys)};\nEND",
        f"CREATE TRIGGER job_rollups_update AFTER UPDATE OF {', '.join(watched)} ON jobs\n"
        f"WHEN (OLD.cost_status IS NOT NULL OR NEW.cost_status IS NOT NULL) AND {_changed('sqlite', watched)}\n"
        f"BEGIN\n  {update_body};\nEND",
        f"CREATE TRIGGER job_rollups_delete AFTER DELETE ON jobs WHEN OLD.cost_status IS NOT NULL\n"
        f"BEGIN\n  {delete_body};\nEND",
    ]


def _postgres_triggers(keys: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    take_out = ";\n      ".join(_take_out("OLD", "postgresql", keys))
    function = f"""CREATE FUNCTION job_rollups_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF OLD.cost_status IS NOT NULL THEN
      {take_out};
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    IF NEW.cost_status IS NOT NULL THEN
      {_add('NEW', 'postgresql', keys)};
    END IF;
  END IF;
  RETURN NULL;
END
$$"""
    run = "EXECUTE FUNCTION job_rollups_apply()"
    return [
        function,
        f"CREATE TRIGGER job_rollups_insert AFTER INSERT ON jobs FOR EACH ROW WHEN (NEW.cost_status IS NOT NULL) {run}",
        f"CREATE TRIGGER job_rollups_update AFTER UPDATE OF {', '.join(watched)} ON jobs FOR EACH ROW WHEN "
        f"((OLD.cost_status IS NOT NULL OR NEW.cost_status IS NOT NULL) AND {_changed('postgresql', watched)}) {run}",
        f"CREATE TRIGGER job_rollups_delete AFTER DELETE ON jobs FOR EACH ROW WHEN (OLD.cost_status IS NOT NULL) {run}",
    ]


def _backfill(dialect: str, keys: tuple[str, ...]) -> str:
    values = _keys("jobs", dialect, keys)
    sums = ["count(*)", *(f"coalesce(sum({m}), 0)" for m in _measures("jobs")[1:])]
    return (f"INSERT INTO job_rollups ({', '.join(keys + MEASURES)}) SELECT {', '.join(values + sums)} FROM jobs "
            f"WHERE jobs.cost_status IS NOT NULL GROUP BY {', '.join(values)}")


def _drop() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON jobs" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS job_rollups_apply()")
    op.drop_table('job_rollups')


def _create(keys: tuple[str, ...], watched: tuple[str, ...]) -> None:
    extra = [sa.Column('provider', sa.String(length=32), nullable=False),
             sa.Column('deployment', sa.String(length=64), nullable=False)] if "provider" in keys else []
    op.create_table('job_rollups',
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=300), nullable=False),
    sa.Column('project', sa.String(length=100), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=40), nullable=False),
    sa.Column('cost_status', sa.String(length=16), nullable=False),
    *extra,
    sa.Column('jobs', sa.BigInteger(), nullable=False),
    sa.Column('cost_micro', sa.BigInteger(), nullable=False),
    sa.Column('cost_pico_rest', sa.BigInteger(), nullable=False),
    sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cached_tokens', sa.BigInteger(), nullable=False),
    sa.Column('candidates_tokens', sa.BigInteger(), nullable=False),
    sa.Column('thoughts_tokens', sa.BigInteger(), nullable=False),
    sa.Column('tool_use_prompt_tokens', sa.BigInteger(), nullable=False),
    sa.Column('lines_succeeded', sa.BigInteger(), nullable=False),
    sa.Column('lines_failed', sa.BigInteger(), nullable=False),
    sa.Column('lines_malformed', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint(*keys, name=op.f('pk_job_rollups')),
    sqlite_with_rowid=False,
    )
    dialect = op.get_bind().dialect.name
    op.execute(_backfill(dialect, keys))
    for statement in _postgres_triggers(keys, watched) if dialect == "postgresql" else _sqlite_triggers(keys, watched):
        op.execute(statement)


def upgrade() -> None:
    _drop()
    _create(NEW_KEYS, NEW_WATCHED)


def downgrade() -> None:
    _drop()
    _create(OLD_KEYS, OLD_WATCHED)
