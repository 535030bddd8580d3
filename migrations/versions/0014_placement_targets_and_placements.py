"""placement_targets, placements: the deployments placement chooses among (lock row, circuit breaker, the
upstream's enqueued-token figures) and the tokens each create holds on one

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import proxy.ledger.models

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('placement_targets',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('open_until', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('probe_until', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_outcome', sa.String(length=16), nullable=False),
    sa.Column('last_outcome_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('reported_enqueued', sa.BigInteger(), nullable=True),
    sa.Column('reported_quota', sa.BigInteger(), nullable=True),
    sa.Column('reported_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_placement_targets'))
    )
    op.create_table('placements',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_pk', sa.Integer(), nullable=True),
    sa.Column('created_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_pk'], ['jobs.id'], name=op.f('fk_placements_job_pk_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_placements'))
    )
    with op.batch_alter_table('placements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_placements_job_pk'), ['job_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_placements_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_placements_target'), ['target'], unique=False)
        batch_op.create_index('ix_placements_target_state', ['target', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('placements', schema=None) as batch_op:
        batch_op.drop_index('ix_placements_target_state')
        batch_op.drop_index(batch_op.f('ix_placements_target'))
        batch_op.drop_index(batch_op.f('ix_placements_state'))
        batch_op.drop_index(batch_op.f('ix_placements_job_pk'))

    op.drop_table('placements')
    op.drop_table('placement_targets')
