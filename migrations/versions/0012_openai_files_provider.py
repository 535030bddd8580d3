"""openai_files.provider: where a door file's batches run (vertex: converted; openai / azure: kept unchanged)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 13:00:00

Added in place (ALTER TABLE ... ADD COLUMN), never with a batch-mode rebuild.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('openai_files', sa.Column('provider', sa.String(length=32), server_default='vertex',
                                            nullable=False))


def downgrade() -> None:
    op.drop_column('openai_files', 'provider')
