"""indexes for reads that must not grow with history

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:30:00

A completion's label jobs (GET /completions/{id}) were found by a sequential scan of every label
job ever printed. Lots filtered by product alone, and label jobs by printer alone, are listed
newest first: (product_id, id) and (printer_uri, id) give those pages from the index in order,
instead of a backward walk of all lots or jobs (long for a product or printer with few rows).
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('label_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_label_jobs_completion_id', ['completion_id'], unique=False)
        batch_op.create_index('ix_label_jobs_printer_id', ['printer_uri', 'id'], unique=False)
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_product_id', ['product_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_product_id')
    with op.batch_alter_table('label_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_label_jobs_printer_id')
        batch_op.drop_index('ix_label_jobs_completion_id')
