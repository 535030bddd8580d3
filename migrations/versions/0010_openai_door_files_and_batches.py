"""openai_files and openai_batches: the OpenAI door's files and batches; jobs.batch_id names a door batch's job

Revision ID: 0010
Revises: 0009 (0007 is not used: the branches of this work were merged in the order 0008, 0009, 0010)
Create Date: 2026-11-30 10:00:00

`jobs.batch_id` is added in place (ALTER TABLE ... ADD COLUMN, on SQLite too), never with a batch-mode rebuild of
`jobs`, which would drop the rollup triggers of 0004 with the old table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import proxy.ledger.models

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('batch_id', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_jobs_batch_id'), 'jobs', ['batch_id'], unique=False)
    op.create_table('openai_files',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=300), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('vertex_lines', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('input_uri', sa.Text(), nullable=False),
    sa.Column('converted_uri', sa.Text(), nullable=False),
    sa.Column('index_uri', sa.Text(), nullable=False),
    sa.Column('created_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_openai_files_key_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_openai_files')),
    sa.UniqueConstraint('input_uri', name=op.f('uq_openai_files_input_uri'))
    )
    op.create_index(op.f('ix_openai_files_key_id'), 'openai_files', ['key_id'], unique=False)
    op.create_index('ix_openai_files_team_created_at', 'openai_files', ['team', 'created_at'], unique=False)
    op.create_table('openai_batches',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('input_file_id', sa.String(length=64), nullable=False),
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('completion_window', sa.String(length=16), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('job_pk', sa.Integer(), nullable=True),
    sa.Column('output_file_id', sa.String(length=64), nullable=True),
    sa.Column('error_file_id', sa.String(length=64), nullable=True),
    sa.Column('output_bytes', sa.BigInteger(), nullable=True),
    sa.Column('error_bytes', sa.BigInteger(), nullable=True),
    sa.Column('created_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('cancel_requested_at', proxy.ledger.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('errors', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['input_file_id'], ['openai_files.id'],
                            name=op.f('fk_openai_batches_input_file_id_openai_files')),
    sa.ForeignKeyConstraint(['job_pk'], ['jobs.id'], name=op.f('fk_openai_batches_job_pk_jobs')),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_openai_batches_key_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_openai_batches')),
    sa.UniqueConstraint('job_pk', name=op.f('uq_openai_batches_job_pk')),
    sa.UniqueConstraint('output_file_id', name=op.f('uq_openai_batches_output_file_id')),
    sa.UniqueConstraint('error_file_id', name=op.f('uq_openai_batches_error_file_id'))
    )
    op.create_index(op.f('ix_openai_batches_input_file_id'), 'openai_batches', ['input_file_id'], unique=False)
    op.create_index(op.f('ix_openai_batches_key_id'), 'openai_batches', ['key_id'], unique=False)
    op.create_index('ix_openai_batches_team_created_at', 'openai_batches', ['team', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_table('openai_batches')
    op.drop_table('openai_files')
    op.drop_index(op.f('ix_jobs_batch_id'), table_name='jobs')
    op.drop_column('jobs', 'batch_id')
