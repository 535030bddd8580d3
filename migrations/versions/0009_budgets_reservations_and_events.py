"""budgets, budget_reservations, budget_events: dollar budgets, the reservations creates hold against them, and
threshold events

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 09:29:59.693981
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import proxy.ledger.models

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('budgets',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('limit_pico', sa.BigInteger(), nullable=False),
    sa.Column('allow_unestimated', sa.Boolean(), nullable=False),
    sa.Column('updated_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budgets')),
    sa.UniqueConstraint('team', 'key_id', name='uq_budgets_team_key')
    )
    op.create_table('budget_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], name=op.f('fk_budget_events_budget_id_budgets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_events')),
    sa.UniqueConstraint('budget_id', 'period_start', 'kind', name='uq_budget_events_once')
    )
    with op.batch_alter_table('budget_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_events_budget_id'), ['budget_id'], unique=False)

    op.create_table('budget_reservations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('project', sa.String(length=100), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('amount_pico', sa.BigInteger(), nullable=False),
    sa.Column('low_pico', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_pk', sa.Integer(), nullable=True),
    sa.Column('created_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_pk'], ['jobs.id'], name=op.f('fk_budget_reservations_job_pk_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_reservations'))
    )
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_reservations_job_pk'), ['job_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_budget_reservations_state'), ['state'], unique=False)
        batch_op.create_index('ix_budget_reservations_team_state', ['team', 'state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.drop_index('ix_budget_reservations_team_state')
        batch_op.drop_index(batch_op.f('ix_budget_reservations_state'))
        batch_op.drop_index(batch_op.f('ix_budget_reservations_job_pk'))

    op.drop_table('budget_reservations')
    with op.batch_alter_table('budget_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budget_events_budget_id'))

    op.drop_table('budget_events')
    op.drop_table('budgets')
