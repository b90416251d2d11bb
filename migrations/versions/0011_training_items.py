"""training owns training: subjects, items, requirements; assignments point at items

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:00:00

What is trained moves out of the quality tables into training's own (docs/training.md, "The model"):

- every document becomes a training subject (kind "document", its number as key; subject id = document id);
- every revision that was ever approved becomes a training item (item id = revision id), with its approval, effect,
  replacement and retirement times, its content link and its source (qms_document_revision, revision id);
- the training matrix, `qms_document_audience`, becomes `training_requirement` (same ids): subject and target instead
  of document and job function, and dates of validity and a reason, empty for the existing rows;
- every assignment points at its subject and item instead of its document and revision (same ids).

The history moves with the records and keeps its hashes (docs/audit-trail.md, "Schema migrations"): the version
table of the matrix is renamed, not copied, and keeps hashing under its first name; the columns the move removes stay
in the version tables for the versions written before. The move itself is one audit transaction of the chain, made
by this migration (channel "migration"): a version row for every subject and item (created), every requirement
(changed, or deleted again for one removed before: its subject and target are named from then on) and every
assignment (changed), sealed into the hash chain like any other transaction.
"""
import getpass

from alembic import op
import sqlalchemy as sa

import core.db
from core import audit
from core.audit import guards as audit_guards
from core.clock import now_utc


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

NEW_VERSION_TABLES = ['training_subject_version', 'training_item_version']
RELEASED = ('approved', 'effective', 'superseded', 'obsolete')


def _version_columns(*columns):
    return [*columns,
            sa.Column('transaction_id', sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column('operation_type', sa.SmallInteger(), nullable=False)]


def _version_indexes(table, *indexed):
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f'ix_{table}_operation_type'), ['operation_type'], unique=False)
        batch_op.create_index(f'ix_{table}_pk_transaction_id', ['id', sa.literal_column('transaction_id DESC')],
                              unique=False)
        batch_op.create_index(batch_op.f(f'ix_{table}_transaction_id'), ['transaction_id'], unique=False)
        for column in indexed:
            batch_op.create_index(batch_op.f(f'ix_{table}_{column}'), [column], unique=False)


def _create_tables():
    op.create_table('training_subject_version', *_version_columns(
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('kind', sa.String(length=32), autoincrement=False, nullable=True),
        sa.Column('key', sa.String(length=64), autoincrement=False, nullable=True),
        sa.Column('title', sa.String(length=300), autoincrement=False, nullable=True),
        sa.Column('category', sa.String(length=32), autoincrement=False, nullable=True),
        sa.Column('department_id', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('page_url', sa.String(length=500), autoincrement=False, nullable=True),
        sa.Column('days_allowed', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('min_read_seconds', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('created_at', core.db.UTCDateTime(), autoincrement=False, nullable=True)),
        sa.PrimaryKeyConstraint('id', 'transaction_id', name=op.f('pk_training_subject_version')))
    _version_indexes('training_subject_version', 'department_id', 'key')
    op.create_table('training_item_version', *_version_columns(
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('subject_id', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('version_label', sa.String(length=32), autoincrement=False, nullable=True),
        sa.Column('version_major', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('version_minor', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('major_change', sa.Boolean(), autoincrement=False, nullable=True),
        sa.Column('method', sa.String(length=32), autoincrement=False, nullable=True),
        sa.Column('content_url', sa.String(length=500), autoincrement=False, nullable=True),
        sa.Column('content_type', sa.String(length=64), autoincrement=False, nullable=True),
        sa.Column('source_type', sa.String(length=64), autoincrement=False, nullable=True),
        sa.Column('source_id', sa.Integer(), autoincrement=False, nullable=True),
        sa.Column('published_at', core.db.UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column('effective_on', sa.Date(), autoincrement=False, nullable=True),
        sa.Column('effective_at', core.db.UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column('superseded_at', core.db.UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column('retired_at', core.db.UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column('retired_reason', sa.Text(), autoincrement=False, nullable=True)),
        sa.PrimaryKeyConstraint('id', 'transaction_id', name=op.f('pk_training_item_version')))
    _version_indexes('training_item_version', 'subject_id')
    op.create_table(
        'training_subject',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('category', sa.String(length=32), nullable=True),
        sa.Column('department_id', sa.Integer(), nullable=True),
        sa.Column('page_url', sa.String(length=500), nullable=True),
        sa.Column('days_allowed', sa.Integer(), nullable=False),
        sa.Column('min_read_seconds', sa.Integer(), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['department_id'], ['core_department.id'],
                                name=op.f('fk_training_subject_department_id_core_department')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_subject')),
        sa.UniqueConstraint('kind', 'key', name=op.f('uq_training_subject_kind_key')),
        sqlite_autoincrement=True)
    with op.batch_alter_table('training_subject', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_subject_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_training_subject_key'), ['key'], unique=False)
    op.create_table(
        'training_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subject_id', sa.Integer(), nullable=False),
        sa.Column('version_label', sa.String(length=32), nullable=False),
        sa.Column('version_major', sa.Integer(), nullable=False),
        sa.Column('version_minor', sa.Integer(), nullable=False),
        sa.Column('major_change', sa.Boolean(), nullable=False),
        sa.Column('method', sa.String(length=32), nullable=False),
        sa.Column('content_url', sa.String(length=500), nullable=False),
        sa.Column('content_type', sa.String(length=64), nullable=False),
        sa.Column('source_type', sa.String(length=64), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('published_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('effective_on', sa.Date(), nullable=True),
        sa.Column('effective_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('superseded_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('retired_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('retired_reason', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['subject_id'], ['training_subject.id'],
                                name=op.f('fk_training_item_subject_id_training_subject')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_item')),
        sa.UniqueConstraint('source_type', 'source_id', name=op.f('uq_training_item_source_type_source_id')),
        sa.UniqueConstraint('subject_id', 'version_major', 'version_minor',
                            name=op.f('uq_training_item_subject_id_version_major_version_minor')),
        sqlite_autoincrement=True)
    with op.batch_alter_table('training_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_item_subject_id'), ['subject_id'], unique=False)
    op.create_table(
        'training_requirement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subject_id', sa.Integer(), nullable=False),
        sa.Column('target_type', sa.String(length=16), nullable=False),
        sa.Column('target_id', sa.Integer(), nullable=False),
        sa.Column('retrain', sa.String(length=8), server_default='every', nullable=False),
        sa.Column('recurrence_months', sa.Integer(), nullable=True),
        sa.Column('days_allowed', sa.Integer(), nullable=True),
        sa.Column('valid_from', sa.Date(), nullable=True),
        sa.Column('valid_to', sa.Date(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['subject_id'], ['training_subject.id'],
                                name=op.f('fk_training_requirement_subject_id_training_subject')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_requirement')),
        sa.UniqueConstraint('subject_id', 'target_type', 'target_id',
                            name=op.f('uq_training_requirement_subject_id_target_type_target_id')),
        sqlite_autoincrement=True)
    with op.batch_alter_table('training_requirement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_requirement_subject_id'), ['subject_id'], unique=False)


def _move_requirement_history():
    """qms_document_audience_version -> training_requirement_version: renamed with its rows, columns added; its old
    indexes are named after the new table, and those of the retired columns dropped."""
    audit_guards.uninstall(op, ['qms_document_audience_version'])
    for name in ('document_id', 'job_function_id', 'operation_type', 'transaction_id', 'pk_transaction_id'):
        op.drop_index(f'ix_qms_document_audience_version_{name}', table_name='qms_document_audience_version')
    op.rename_table('qms_document_audience_version', 'training_requirement_version')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE training_requirement_version RENAME CONSTRAINT pk_qms_document_audience_version '
                   'TO pk_training_requirement_version')
    for column in (sa.Column('subject_id', sa.Integer(), autoincrement=False, nullable=True),
                   sa.Column('target_type', sa.String(length=16), autoincrement=False, nullable=True),
                   sa.Column('target_id', sa.Integer(), autoincrement=False, nullable=True),
                   sa.Column('valid_from', sa.Date(), autoincrement=False, nullable=True),
                   sa.Column('valid_to', sa.Date(), autoincrement=False, nullable=True),
                   sa.Column('reason', sa.Text(), autoincrement=False, nullable=True)):
        op.add_column('training_requirement_version', column)
    _version_indexes('training_requirement_version', 'subject_id')
    audit_guards.install(op, ['training_requirement_version'])


def _assignment_columns():
    for table in ('training_assignment', 'training_assignment_version'):
        op.add_column(table, sa.Column('subject_id', sa.Integer(), nullable=True))
        op.add_column(table, sa.Column('item_id', sa.Integer(), nullable=True))
    op.drop_index('ix_training_assignment_version_document_id', table_name='training_assignment_version')
    op.drop_index('ix_training_assignment_version_revision_id', table_name='training_assignment_version')
    op.create_index('ix_training_assignment_version_subject_id', 'training_assignment_version', ['subject_id'])
    op.create_index('ix_training_assignment_version_item_id', 'training_assignment_version', ['item_id'])


def _finish_assignments():
    with op.batch_alter_table('training_assignment', recreate='always',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint('uq_training_assignment_user_id_revision_id_cycle', type_='unique')
        batch_op.drop_constraint('fk_training_assignment_document_id_qms_document', type_='foreignkey')
        batch_op.drop_constraint('fk_training_assignment_revision_id_qms_document_revision', type_='foreignkey')
        batch_op.drop_index('ix_training_assignment_document_id')
        batch_op.drop_index('ix_training_assignment_revision_id')
        batch_op.drop_column('document_id')
        batch_op.drop_column('revision_id')
        batch_op.alter_column('subject_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('item_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(batch_op.f('fk_training_assignment_subject_id_training_subject'),
                                    'training_subject', ['subject_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_training_assignment_item_id_training_item'),
                                    'training_item', ['item_id'], ['id'])
        batch_op.create_unique_constraint(batch_op.f('uq_training_assignment_user_id_item_id_cycle'),
                                          ['user_id', 'item_id', 'cycle'])
        batch_op.create_index(batch_op.f('ix_training_assignment_subject_id'), ['subject_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_training_assignment_item_id'), ['item_id'], unique=False)


def _restart_sequences(conn):
    """Ids given explicitly (the document's and revision's) must not be given again; nor may a requirement removed
    before the move see its id reused (its history would merge with the new row's)."""
    ceilings = {'training_subject': 'SELECT MAX(id) FROM training_subject',
                'training_item': 'SELECT MAX(id) FROM training_item',
                'training_requirement': 'SELECT MAX(id) FROM training_requirement_version'}
    for table, query in ceilings.items():
        top = conn.execute(sa.text(query)).scalar()
        if top is None:
            continue
        if conn.dialect.name == 'postgresql':
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), :top)"), {'top': top})
        else:
            conn.execute(sa.text('DELETE FROM sqlite_sequence WHERE name = :t'), {'t': table})
            conn.execute(sa.text('INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :top)'), {'t': table, 'top': top})


def _move_data(conn):
    text = 'TEXT' if conn.dialect.name == 'sqlite' else 'VARCHAR'
    conn.execute(sa.text(
        "INSERT INTO training_subject (id, kind, key, title, category, department_id, page_url, days_allowed, "
        "min_read_seconds, created_at) "
        f"SELECT id, 'document', number, title, doc_type, department_id, '/documents/' || CAST(id AS {text}), "
        "training_window_days, min_read_seconds, created_at FROM qms_document"))
    released = ', '.join(f"'{s}'" for s in RELEASED)
    conn.execute(sa.text(
        "INSERT INTO training_item (id, subject_id, version_label, version_major, version_minor, major_change, "
        "method, content_url, content_type, source_type, source_id, published_at, effective_on, effective_at, "
        "superseded_at, retired_at, retired_reason) "
        f"SELECT r.id, r.document_id, CAST(r.major AS {text}) || '.' || CAST(r.minor AS {text}), r.major, r.minor, "
        "r.minor = 0, 'read_and_sign', "
        f"'/documents/' || CAST(r.document_id AS {text}) || '/revisions/' || CAST(r.id AS {text}) || "
        "CASE WHEN r.content_format = 'pdf' THEN '/content.pdf' ELSE '/content' END, "
        "CASE WHEN r.content_format = 'pdf' THEN 'application/pdf' ELSE 'text/html' END, "
        "'qms_document_revision', r.id, COALESCE(r.approved_at, r.effective_at, r.created_at), r.effective_on, "
        "r.effective_at, r.superseded_at, r.obsoleted_at, r.obsolete_reason FROM qms_document_revision r "
        f"WHERE r.status IN ({released}) OR r.id IN (SELECT revision_id FROM training_assignment)"))
    conn.execute(sa.text(
        "INSERT INTO training_requirement (id, subject_id, target_type, target_id, retrain, recurrence_months, "
        "days_allowed) SELECT id, document_id, 'job_function', job_function_id, retrain, recurrence_months, "
        "days_allowed FROM qms_document_audience"))
    conn.execute(sa.text("UPDATE training_assignment SET subject_id = document_id, item_id = revision_id"))


def _record_the_move(conn):
    """The move as one audit transaction of the chain: who (this migration, the OS user), why, and a version row for
    every record it created or changed, sealed like any other transaction."""
    try:
        os_user = getpass.getuser()
    except Exception:  # no login name in some containers
        os_user = 'unknown'
    tx = audit.AuditTransaction.__table__
    tx_id = conn.execute(sa.insert(tx).values(
        issued_at=now_utc(), printed_name=f'schema migration 0011 (Alembic, OS user {os_user})', channel='migration',
        reason='Schema migration 0011: training subjects, items and requirements moved out of the quality tables '
               '(documents become training subjects, approved revisions training items, the training matrix '
               'training requirements; assignments point at items)').returning(tx.c.id)).scalar_one()
    for table, columns in (
            ('training_subject', 'id, kind, key, title, category, department_id, page_url, days_allowed, '
                                 'min_read_seconds, created_at'),
            ('training_item', 'id, subject_id, version_label, version_major, version_minor, major_change, method, '
                              'content_url, content_type, source_type, source_id, published_at, effective_on, '
                              'effective_at, superseded_at, retired_at, retired_reason')):
        conn.execute(sa.text(f'INSERT INTO {table}_version ({columns}, transaction_id, operation_type) '
                             f'SELECT {columns}, :tx, 0 FROM {table}'), {'tx': tx_id})
    requirement = ('id, subject_id, target_type, target_id, retrain, recurrence_months, days_allowed, valid_from, '
                   'valid_to, reason')
    conn.execute(sa.text(f'INSERT INTO training_requirement_version ({requirement}, transaction_id, operation_type) '
                         f'SELECT {requirement}, :tx, 1 FROM training_requirement'), {'tx': tx_id})
    # a requirement removed before the move: its last version, naming its subject and target, deleted again
    conn.execute(sa.text(
        f'INSERT INTO training_requirement_version ({requirement}, transaction_id, operation_type) '
        "SELECT v.id, v.document_id, 'job_function', v.job_function_id, v.retrain, v.recurrence_months, "
        'v.days_allowed, NULL, NULL, NULL, :tx, 2 FROM training_requirement_version v '
        'WHERE v.transaction_id = (SELECT MAX(w.transaction_id) FROM training_requirement_version w '
        'WHERE w.id = v.id AND w.transaction_id <> :tx) '
        'AND v.id NOT IN (SELECT id FROM training_requirement)'), {'tx': tx_id})
    assignment = ('id, user_id, subject_id, item_id, cycle, status, source_type, source_id, due_on, assigned_at, '
                  'opened_at, completed_at, signature_id, closed_reason, assigned_reason')
    conn.execute(sa.text(f'INSERT INTO training_assignment_version ({assignment}, transaction_id, operation_type) '
                         f'SELECT {assignment}, :tx, 1 FROM training_assignment'), {'tx': tx_id})
    audit.seal_migration(conn, tx_id, {
        'training_subject_version': ('training_subject', 'training_subject_version'),
        'training_item_version': ('training_item', 'training_item_version'),
        'training_requirement_version': ('training_requirement', 'qms_document_audience_version'),
        'training_assignment_version': ('training_assignment', 'training_assignment_version'),
    })


def upgrade():
    conn = op.get_bind()
    _create_tables()
    _move_requirement_history()
    _assignment_columns()
    _move_data(conn)
    _finish_assignments()
    with op.batch_alter_table('qms_document_audience', schema=None) as batch_op:
        batch_op.drop_index('ix_qms_document_audience_document_id')
        batch_op.drop_index('ix_qms_document_audience_job_function_id')
    op.drop_table('qms_document_audience')
    _restart_sequences(conn)
    audit_guards.install(op, NEW_VERSION_TABLES)
    moved = sum(conn.execute(sa.text(f'SELECT COUNT(*) FROM {table}')).scalar()
                for table in ('training_subject', 'training_requirement_version', 'training_assignment'))
    if moved:  # a new installation has nothing to move, and records nothing
        _record_the_move(conn)


def downgrade():
    """Back to document and revision columns and the qms matrix table, for development only: the history written
    since 0011 stays where it is, and the transaction that recorded the move names tables that no longer exist, so
    `flask audit verify` reports the chain broken there (a production database is restored from its backup)."""
    conn = op.get_bind()
    op.create_table(
        'qms_document_audience',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('document_id', sa.Integer(), nullable=False),
        sa.Column('job_function_id', sa.Integer(), nullable=False),
        sa.Column('retrain', sa.String(length=8), server_default='every', nullable=False),
        sa.Column('recurrence_months', sa.Integer(), nullable=True),
        sa.Column('days_allowed', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['document_id'], ['qms_document.id'],
                                name=op.f('fk_qms_document_audience_document_id_qms_document')),
        sa.ForeignKeyConstraint(['job_function_id'], ['core_job_function.id'],
                                name=op.f('fk_qms_document_audience_job_function_id_core_job_function')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_qms_document_audience')),
        sa.UniqueConstraint('document_id', 'job_function_id',
                            name=op.f('uq_qms_document_audience_document_id_job_function_id')),
        sqlite_autoincrement=True)
    with op.batch_alter_table('qms_document_audience', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qms_document_audience_document_id'), ['document_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_qms_document_audience_job_function_id'), ['job_function_id'],
                              unique=False)
    conn.execute(sa.text(
        'INSERT INTO qms_document_audience (id, document_id, job_function_id, retrain, recurrence_months, '
        'days_allowed) SELECT r.id, d.id, r.target_id, r.retrain, r.recurrence_months, r.days_allowed '
        'FROM training_requirement r JOIN training_subject s ON s.id = r.subject_id '
        "JOIN qms_document d ON d.number = s.key WHERE s.kind = 'document' AND r.target_type = 'job_function'"))
    op.add_column('training_assignment', sa.Column('document_id', sa.Integer(), nullable=True))
    op.add_column('training_assignment', sa.Column('revision_id', sa.Integer(), nullable=True))
    conn.execute(sa.text(
        'UPDATE training_assignment SET revision_id = (SELECT i.source_id FROM training_item i '
        'WHERE i.id = training_assignment.item_id)'))
    conn.execute(sa.text(
        'UPDATE training_assignment SET document_id = (SELECT r.document_id FROM qms_document_revision r '
        'WHERE r.id = training_assignment.revision_id)'))
    with op.batch_alter_table('training_assignment', recreate='always',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint('uq_training_assignment_user_id_item_id_cycle', type_='unique')
        batch_op.drop_constraint('fk_training_assignment_subject_id_training_subject', type_='foreignkey')
        batch_op.drop_constraint('fk_training_assignment_item_id_training_item', type_='foreignkey')
        batch_op.drop_index('ix_training_assignment_subject_id')
        batch_op.drop_index('ix_training_assignment_item_id')
        batch_op.drop_column('subject_id')
        batch_op.drop_column('item_id')
        batch_op.alter_column('document_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('revision_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key('fk_training_assignment_document_id_qms_document', 'qms_document',
                                    ['document_id'], ['id'])
        batch_op.create_foreign_key('fk_training_assignment_revision_id_qms_document_revision',
                                    'qms_document_revision', ['revision_id'], ['id'])
        batch_op.create_unique_constraint('uq_training_assignment_user_id_revision_id_cycle',
                                          ['user_id', 'revision_id', 'cycle'])
        batch_op.create_index('ix_training_assignment_document_id', ['document_id'], unique=False)
        batch_op.create_index('ix_training_assignment_revision_id', ['revision_id'], unique=False)
    op.drop_index('ix_training_assignment_version_subject_id', table_name='training_assignment_version')
    op.drop_index('ix_training_assignment_version_item_id', table_name='training_assignment_version')
    with op.batch_alter_table('training_assignment_version', schema=None) as batch_op:
        batch_op.drop_column('subject_id')
        batch_op.drop_column('item_id')
        batch_op.create_index('ix_training_assignment_version_document_id', ['document_id'], unique=False)
        batch_op.create_index('ix_training_assignment_version_revision_id', ['revision_id'], unique=False)
    audit_guards.reinstall(op, ['training_assignment_version'])

    audit_guards.uninstall(op, ['training_requirement_version'])
    for name in ('subject_id', 'operation_type', 'transaction_id', 'pk_transaction_id'):
        op.drop_index(f'ix_training_requirement_version_{name}', table_name='training_requirement_version')
    with op.batch_alter_table('training_requirement_version', schema=None) as batch_op:
        for column in ('subject_id', 'target_type', 'target_id', 'valid_from', 'valid_to', 'reason'):
            batch_op.drop_column(column)
    op.rename_table('training_requirement_version', 'qms_document_audience_version')
    if conn.dialect.name == 'postgresql':
        op.execute('ALTER TABLE qms_document_audience_version RENAME CONSTRAINT pk_training_requirement_version '
                   'TO pk_qms_document_audience_version')
    with op.batch_alter_table('qms_document_audience_version', schema=None) as batch_op:
        batch_op.create_index('ix_qms_document_audience_version_document_id', ['document_id'], unique=False)
        batch_op.create_index('ix_qms_document_audience_version_job_function_id', ['job_function_id'], unique=False)
        batch_op.create_index('ix_qms_document_audience_version_operation_type', ['operation_type'], unique=False)
        batch_op.create_index('ix_qms_document_audience_version_pk_transaction_id',
                              ['id', sa.literal_column('transaction_id DESC')], unique=False)
        batch_op.create_index('ix_qms_document_audience_version_transaction_id', ['transaction_id'], unique=False)
    audit_guards.install(op, ['qms_document_audience_version'])
    audit_guards.uninstall(op, NEW_VERSION_TABLES)
    op.drop_table('training_requirement')
    op.drop_table('training_item')
    op.drop_table('training_subject')
    op.drop_table('training_item_version')
    op.drop_table('training_subject_version')
