"""firmware, firmware assignments, completions.firmware_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 04:46:40.154060

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('firmware',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.String(length=1024), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('release_error', sa.Text(), nullable=True),
    sa.Column('distributed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_by', sa.String(length=64), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoke_reason', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_firmware_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware')),
    sa.UniqueConstraint('product_id', 'version', name=op.f('uq_firmware_product_id_version')),
    sa.UniqueConstraint('storage_key', name=op.f('uq_firmware_storage_key'))
    )
    with op.batch_alter_table('firmware', schema=None) as batch_op:
        batch_op.create_index('ix_firmware_product_state_id', ['product_id', 'state', 'id'], unique=False)
        batch_op.create_index('ix_firmware_state_id', ['state', 'id'], unique=False)

    op.create_table('firmware_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('firmware_id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('acked_sha256', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['firmware_id'], ['firmware.id'], name=op.f('fk_firmware_assignments_firmware_id_firmware')),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_firmware_assignments_station_id_stations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware_assignments')),
    sa.UniqueConstraint('firmware_id', 'station_id', name=op.f('uq_firmware_assignments_firmware_id_station_id'))
    )
    with op.batch_alter_table('firmware_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_firmware_assignments_station_state', ['station_id', 'state'], unique=False)

    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('firmware_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_completions_firmware_id_firmware'), 'firmware', ['firmware_id'], ['id'])



def downgrade():
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_completions_firmware_id_firmware'), type_='foreignkey')
        batch_op.drop_column('firmware_id')

    with op.batch_alter_table('firmware_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_firmware_assignments_station_state')

    op.drop_table('firmware_assignments')
    with op.batch_alter_table('firmware', schema=None) as batch_op:
        batch_op.drop_index('ix_firmware_state_id')
        batch_op.drop_index('ix_firmware_product_state_id')

    op.drop_table('firmware')
