"""job_rollups: per-day sums of metered jobs, kept by triggers on jobs, for cost reports

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 22:00:00.000000

A cost report over a million jobs must answer within a second; a GROUP BY over every job row sorts a million
rows (2-3 s on SQLite and on PostgreSQL). The rollup holds one row per (UTC create day, team, key, model,
project, location, state, cost status) of metered jobs, which reports group instead.

Triggers keep it exact whoever writes `jobs`: an insert of a metered job adds its figures; an update that
touches a figure or a grouping column of a metered job takes the old figures out and puts the new ones in; a
delete takes them out. Jobs not metered yet (cost_status NULL) are never in it.

On SQLite a later migration that rebuilds `jobs` with batch_alter_table (copy, drop, rename) drops these
triggers with the old table: such a migration must create them again (tests/reports checks they exist at head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = ("day", "team", "key_id", "model", "project", "location", "state", "cost_status")
MEASURES = ("jobs", "cost_micro", "cost_pico_rest", "prompt_tokens", "cached_tokens", "candidates_tokens",
            "thoughts_tokens", "tool_use_prompt_tokens", "lines_succeeded", "lines_failed", "lines_malformed")
# Columns of jobs whose change moves a metered job's figures or its group.
WATCHED = ("cost_status", "cost_pico", "prompt_tokens", "cached_tokens", "candidates_tokens", "thoughts_tokens",
           "tool_use_prompt_tokens", "lines_succeeded", "lines_failed", "lines_malformed", "team", "key_id",
           "model_id", "model", "project", "location", "state", "create_time")
SPLIT = 1_000_000  # cost in whole micro-dollars + the remaining picodollars


def _day(row: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"to_char({row}.create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"substr({row}.create_time, 1, 10)"  # UtcDateTime is text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC


def _keys(row: str, dialect: str) -> list[str]:
    return [_day(row, dialect), f"{row}.team", f"coalesce({row}.key_id, '')", f"coalesce({row}.model_id, {row}.model)",
            f"{row}.project", f"{row}.location", f"{row}.state", f"{row}.cost_status"]


def _measures(row: str) -> list[str]:
    cost = f"coalesce({row}.cost_pico, 0)"
    priced = f"{row}.cost_status = 'priced'"
    return ["1", f"CASE WHEN {priced} THEN {cost} / {SPLIT} ELSE 0 END",
            # no `%`: it would need escaping for the PostgreSQL driver
            f"CASE WHEN {priced} THEN {cost} - {cost} / {SPLIT} * {SPLIT} ELSE 0 END",
            *(f"{row}.{name}" for name in MEASURES[3:])]


def _match(row: str, dialect: str) -> str:
    return " AND ".join(f"{key} = {value}" for key, value in zip(KEYS, _keys(row, dialect), strict=True))


def _add(row: str, dialect: str) -> str:
    target = "job_rollups." if dialect == "postgresql" else ""
    values = ", ".join(_keys(row, dialect) + _measures(row))
    sums = ", ".join(f"{m} = {target}{m} + excluded.{m}" for m in MEASURES)
    # SQLite needs the WHERE to tell the upsert's ON from a join's.
    return (f"INSERT INTO job_rollups ({', '.join(KEYS + MEASURES)}) SELECT {values} WHERE {row}.cost_status IS NOT "
            f"NULL ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET {sums}")


def _take_out(row: str, dialect: str) -> list[str]:
    minus = ", ".join(f"{m} = {m} - {v}" for m, v in zip(MEASURES, _measures(row), strict=True))
    return [f"UPDATE job_rollups SET {minus} WHERE {_match(row, dialect)}",
            f"DELETE FROM job_rollups WHERE jobs = 0 AND {_match(row, dialect)}"]


def _changed(dialect: str) -> str:
    if dialect == "postgresql":
        return (f"({', '.join('OLD.' + c for c in WATCHED)}) IS DISTINCT FROM "
                f"({', '.join('NEW.' + c for c in WATCHED)})")
    return "(" + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in WATCHED) + ")"


def _sqlite_triggers() -> list[str]:
    update_body = ";\n  ".join([*_take_out("OLD", "sqlite"), _add("NEW", "sqlite")])
    delete_body = ";\n  ".join(_take_out("OLD", "sqlite"))
    return [
        f"CREATE TRIGGER job_rollups_insert AFTER INSERT ON jobs WHEN NEW.cost_status IS NOT NULL\n"
        f"BEGIN\n  {_add('NEW', 'sqlite')};\nEND",
        f"CREATE TRIGGER job_rollups_update AFTER UPDATE OF {', '.join(WATCHED)} ON jobs\n"
        f"WHEN (OLD.cost_status IS NOT NULL OR NEW.cost_status IS NOT NULL) AND {_changed('sqlite')}\n"
        f"BEGIN\n  {update_body};\nEND",
        f"CREATE TRIGGER job_rollups_delete AFTER DELETE ON jobs WHEN OLD.cost_status IS NOT NULL\n"
        f"BEGIN\n  {delete_body};\nEND",
    ]


def _postgres_triggers() -> list[str]:
    take_out = ";\n      ".join(_take_out("OLD", "postgresql"))
    function = f"""CREATE FUNCTION job_rollups_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF OLD.cost_status IS NOT NULL THEN
      {take_out};
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    IF NEW.cost_status IS NOT NULL THEN
      {_add('NEW', 'postgresql')};
    END IF;
  END IF;
  RETURN NULL;
END
$$"""
    run = "EXECUTE FUNCTION job_rollups_apply()"
    return [
        function,
        f"CREATE TRIGGER job_rollups_insert AFTER INSERT ON jobs FOR EACH ROW WHEN (NEW.cost_status IS NOT NULL) {run}",
        f"CREATE TRIGGER job_rollups_update AFTER UPDATE OF {', '.join(WATCHED)} ON jobs FOR EACH ROW WHEN "
        f"((OLD.cost_status IS NOT NULL OR NEW.cost_status IS NOT NULL) AND {_changed('postgresql')}) {run}",
        f"CREATE TRIGGER job_rollups_delete AFTER DELETE ON jobs FOR EACH ROW WHEN (OLD.cost_status IS NOT NULL) {run}",
    ]


def _backfill(dialect: str) -> str:
    keys = _keys("jobs", dialect)
    sums = ["count(*)", *(f"coalesce(sum({m}), 0)" for m in _measures("jobs")[1:])]
    return (f"INSERT INTO job_rollups ({', '.join(KEYS + MEASURES)}) SELECT {', '.join(keys + sums)} FROM jobs "
            f"WHERE jobs.cost_status IS NOT NULL GROUP BY {', '.join(keys)}")


def upgrade() -> None:
    op.create_table('job_rollups',
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=300), nullable=False),
    sa.Column('project', sa.String(length=100), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=40), nullable=False),
    sa.Column('cost_status', sa.String(length=16), nullable=False),
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
    sa.PrimaryKeyConstraint('day', 'team', 'key_id', 'model', 'project', 'location', 'state', 'cost_status',
                            name=op.f('pk_job_rollups')),
    sqlite_with_rowid=False,
    )
    dialect = op.get_bind().dialect.name
    op.execute(_backfill(dialect))
    for statement in _postgres_triggers() if dialect == "postgresql" else _sqlite_triggers():
        op.execute(statement)


def downgrade() -> None:
    for name in ("job_rollups_insert", "job_rollups_update", "job_rollups_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON jobs" if op.get_bind().dialect.name == "postgresql"
                                                        else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS job_rollups_apply()")
    op.drop_table('job_rollups')
