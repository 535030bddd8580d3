"""jobs.deployment: the model catalog's deployment a job runs on (None for native-door jobs)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 12:55:00

Added in place (ALTER TABLE ... ADD COLUMN, on SQLite too), never with a batch-mode rebuild of `jobs`, which would
drop the rollup triggers of 0004 with the old table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('deployment', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_jobs_deployment'), 'jobs', ['deployment'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_jobs_deployment'), table_name='jobs')
    op.drop_column('jobs', 'deployment')
