"""the request id on outbox messages

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 09:00:00

The id of the request that caused a message (the station's X-Request-ID, or the one the web made)
travels with it: the relay publishes it in the task's headers, so the worker's log lines, and the
label it prints, carry the id of the POST they came from. Nullable: messages of beat's runs and
those already waiting when this runs have none. PostgreSQL adds a nullable column without rewriting
the table, so the upgrade is instant whatever the outbox holds.
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('request_id')
