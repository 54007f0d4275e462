"""indexes for the worker: a lot's pending completions, and unit completions by serial

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 05:10:00

The worker locks a lot and reads its still-received completions; with only (lot_id, id) it
walked every decided completion of the lot each time (quadratic over a lot's life). The partial
index holds pending rows only. Unit checks look completions up by serial.
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.create_index('ix_completions_pending', ['lot_id', 'id'], unique=False,
                              postgresql_where=sa.text("status = 'received'"),
                              sqlite_where=sa.text("status = 'received'"))
        batch_op.create_index('ix_completions_unit', ['unit_serial', 'step'], unique=False,
                              postgresql_where=sa.text("unit_serial IS NOT NULL"),
                              sqlite_where=sa.text("unit_serial IS NOT NULL"))


def downgrade():
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_index('ix_completions_unit')
        batch_op.drop_index('ix_completions_pending')
