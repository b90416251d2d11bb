"""training_assignment never reuses an id on SQLite

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 10:00:00

0006 changed the table's unique constraint, which SQLite does by rebuilding the table (Alembic's batch mode), and the
copy lost AUTOINCREMENT: SQLite would then give a deleted row's id (max + 1) to the next assignment, joining it to the
deleted one's history. Rebuilt with it; PostgreSQL (a sequence) is unchanged.
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('training_assignment', recreate='always',
                                  table_kwargs={'sqlite_autoincrement': True}):
            pass


def downgrade():
    pass  # AUTOINCREMENT is what 0004 created; nothing to undo
