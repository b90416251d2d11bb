"""audit trail append-only at database level

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:45:00

"""
from alembic import op

from core.audit import guards as audit_guards

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

VERSION_TABLES = ['core_site_version', 'core_department_version', 'core_job_function_version', 'core_user_version',
                  'core_user_role_version']
TABLES = ['audit_event', *VERSION_TABLES]


def upgrade():
    for sql in audit_guards.core_statements(op.get_bind().dialect.name):
        op.execute(sql)
    audit_guards.install(op, ['audit_event'], versions=False)
    audit_guards.install(op, VERSION_TABLES)


def downgrade():
    audit_guards.uninstall(op, TABLES)
    dialect = op.get_bind().dialect.name
    for name, table in (('audit_transaction_no_delete', 'audit_transaction'),
                        ('audit_transaction_sealed', 'audit_transaction'),
                        ('audit_chain_head_no_delete', 'audit_chain_head'),
                        ('audit_chain_head_advance', 'audit_chain_head')):
        op.execute(f'DROP TRIGGER IF EXISTS "{name}"' + (f' ON "{table}"' if dialect == 'postgresql' else ''))
    if dialect == 'postgresql':  # no trigger uses them any more (later migrations' guards are gone before this one)
        op.execute('DROP FUNCTION IF EXISTS attest_version_append_only()')
        op.execute('DROP FUNCTION IF EXISTS attest_audit_append_only()')
