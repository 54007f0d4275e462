"""initial schema: users, products, routings, stations, lots, completions, audit, outbox

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 04:15:14.899666

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('lot_sequences',
    sa.Column('day', sa.String(length=8), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_lot_sequences'))
    )
    op.create_table('outbox_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('queue', sa.String(length=32), nullable=False),
    sa.Column('dedup_key', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_outbox_messages_dedup_key'))
    )
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['available_at', 'id'], unique=False)

    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('current_revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('code', name=op.f('uq_products_code'))
    )
    op.create_table('stations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('steps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('printer_uri', sa.String(length=500), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('last_heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_heartbeat_info', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stations')),
    sa.UniqueConstraint('code', name=op.f('uq_stations_code'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('routing_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_routing_revisions_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_revisions')),
    sa.UniqueConstraint('product_id', 'revision', name=op.f('uq_routing_revisions_product_id_revision'))
    )
    op.create_table('lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_no', sa.String(length=64), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('routing_revision_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('qty_good', sa.Integer(), nullable=False),
    sa.Column('step_passed', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('current_seq', sa.Integer(), nullable=True),
    sa.Column('current_step', sa.String(length=32), nullable=True),
    sa.Column('hold_reason', sa.String(length=500), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_lots_product_id_products')),
    sa.ForeignKeyConstraint(['routing_revision_id'], ['routing_revisions.id'], name=op.f('fk_lots_routing_revision_id_routing_revisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots')),
    sa.UniqueConstraint('lot_no', name=op.f('uq_lots_lot_no'))
    )
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_product_status', ['product_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_lots_status_id', ['status', 'id'], unique=False)
        batch_op.create_index('ix_lots_step_status', ['current_step', 'status', 'id'], unique=False)

    op.create_table('routing_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('measurements', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('requires_firmware', sa.Boolean(), nullable=False),
    sa.Column('label_template', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['revision_id'], ['routing_revisions.id'], name=op.f('fk_routing_steps_revision_id_routing_revisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_steps')),
    sa.UniqueConstraint('revision_id', 'code', name=op.f('uq_routing_steps_revision_id_code')),
    sa.UniqueConstraint('revision_id', 'seq', name=op.f('uq_routing_steps_revision_id_seq'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('before', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('after', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_events_actor_id_users')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_audit_events_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index('ix_audit_lot_id_id', ['lot_id', 'id'], unique=False)

    op.create_table('completions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('unit_serial', sa.String(length=64), nullable=True),
    sa.Column('measurements', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('firmware_version', sa.String(length=64), nullable=True),
    sa.Column('firmware_sha256', sa.String(length=64), nullable=True),
    sa.Column('qty_good', sa.Integer(), nullable=True),
    sa.Column('qty_scrap', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('results', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_completions_lot_id_lots')),
    sa.ForeignKeyConstraint(['operator_id'], ['users.id'], name=op.f('fk_completions_operator_id_users')),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_completions_station_id_stations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completions')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_completions_idempotency_key'))
    )
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.create_index('ix_completions_lot_id_id', ['lot_id', 'id'], unique=False)
        batch_op.create_index('ix_completions_status_id', ['status', 'id'], unique=False)

    op.create_table('lot_units',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_lot_units_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot_units')),
    sa.UniqueConstraint('serial', name=op.f('uq_lot_units_serial'))
    )
    with op.batch_alter_table('lot_units', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_units_lot_id'), ['lot_id'], unique=False)




def downgrade():

    with op.batch_alter_table('lot_units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_units_lot_id'))

    op.drop_table('lot_units')
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_index('ix_completions_status_id')
        batch_op.drop_index('ix_completions_lot_id_id')

    op.drop_table('completions')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_lot_id_id')
        batch_op.drop_index('ix_audit_entity')

    op.drop_table('audit_events')
    op.drop_table('routing_steps')
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_step_status')
        batch_op.drop_index('ix_lots_status_id')
        batch_op.drop_index('ix_lots_product_status')

    op.drop_table('lots')
    op.drop_table('routing_revisions')
    op.drop_table('users')
    op.drop_table('stations')
    op.drop_table('products')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox_messages')
    op.drop_table('lot_sequences')

