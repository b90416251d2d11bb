"""record number sequences (qms_number_sequence: one counter per prefix and year)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 17:18:14.562471

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


# A counter, not a GxP record: no version table, so no audit_guards.install (qms/numbering.py).
def upgrade():
    op.create_table('qms_number_sequence',
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('prefix', 'year', name=op.f('pk_qms_number_sequence'))
    )


def downgrade():
    op.drop_table('qms_number_sequence')
