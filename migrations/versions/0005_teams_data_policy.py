"""teams: each team's Cloud Storage prefixes, BigQuery datasets and allowed create-body fields

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import proxy.ledger.models

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('teams',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('gcs_prefixes', sa.JSON(), nullable=False),
    sa.Column('bq_datasets', sa.JSON(), nullable=False),
    sa.Column('allowed_fields', sa.JSON(), nullable=False),
    sa.Column('updated_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_teams'))
    )


def downgrade() -> None:
    op.drop_table('teams')
