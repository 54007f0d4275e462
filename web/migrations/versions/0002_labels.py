"""label templates, printers, label jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 04:33:57.592823

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('label_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('variables', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('width_mm', sa.Double(), nullable=False),
    sa.Column('height_mm', sa.Double(), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_templates')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_label_templates_name_version'))
    )
    op.create_table('printers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uri', sa.String(length=500), nullable=False),
    sa.Column('dpi', sa.Integer(), nullable=False),
    sa.Column('width_dots', sa.Integer(), nullable=True),
    sa.Column('length_dots', sa.Integer(), nullable=True),
    sa.Column('darkness', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_printers')),
    sa.UniqueConstraint('uri', name=op.f('uq_printers_uri'))
    )
    op.create_table('label_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('template_name', sa.String(length=64), nullable=False),
    sa.Column('template_version', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('zpl', sa.Text(), nullable=False),
    sa.Column('zpl_sha256', sa.String(length=64), nullable=False),
    sa.Column('printer_uri', sa.String(length=500), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=True),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('completion_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('unit_serial', sa.String(length=64), nullable=True),
    sa.Column('copies', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('reprint_reason', sa.String(length=500), nullable=True),
    sa.Column('reprint_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('printer_reason', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('printed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['completion_id'], ['completions.id'], name=op.f('fk_label_jobs_completion_id_completions')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_label_jobs_lot_id_lots')),
    sa.ForeignKeyConstraint(['reprint_of'], ['label_jobs.id'], name=op.f('fk_label_jobs_reprint_of_label_jobs')),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_label_jobs_station_id_stations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_jobs'))
    )
    with op.batch_alter_table('label_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_label_jobs_lot_id_id', ['lot_id', 'id'], unique=False)
        batch_op.create_index('ix_label_jobs_printer_state_id', ['printer_uri', 'state', 'id'], unique=False)
        batch_op.create_index('ix_label_jobs_state_id', ['state', 'id'], unique=False)




def downgrade():

    with op.batch_alter_table('label_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_label_jobs_state_id')
        batch_op.drop_index('ix_label_jobs_printer_state_id')
        batch_op.drop_index('ix_label_jobs_lot_id_id')

    op.drop_table('label_jobs')
    op.drop_table('printers')
    op.drop_table('label_templates')

