"""jobs.provider: which upstream batch provider a job belongs to ("vertex" for every job recorded before)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 08:30:00

The column is added in place (ALTER TABLE ... ADD COLUMN, on SQLite too), never with a batch-mode rebuild of
`jobs`: a rebuild (copy, drop, rename) would drop the rollup triggers of 0004 with the old table, and would then
have to create them again. Existing rows take the server default, "vertex".
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('provider', sa.String(length=32), server_default='vertex', nullable=False))


def downgrade() -> None:
    # SQLite (>= 3.35) drops a column in place too; the rollup triggers do not name it, so they stay.
    op.drop_column('jobs', 'provider')
