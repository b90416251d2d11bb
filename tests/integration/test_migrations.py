"""The schema comes only from the Alembic migrations, and they match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import Migrate

from core.db import db


def test_migrations_and_models_agree_with_no_pending_autogenerate_diff(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; run `flask db migrate`: {diff}"


def test_database_is_at_the_single_migration_head(app):
    migrate: Migrate = app.extensions["migrate"]
    script = ScriptDirectory.from_config(migrate.migrate.get_config())
    heads = script.get_heads()
    assert len(heads) == 1, f"migration history has several heads: {heads}"
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    assert current == tuple(heads)


def test_version_and_transaction_tables_exist_for_every_versioned_model(app):
    from sqlalchemy import inspect

    from core.db import versioned_classes

    tables = set(inspect(db.engine).get_table_names())
    assert "audit_transaction" in tables and "audit_chain_head" in tables
    for cls in versioned_classes():
        assert f"{cls.__table__.name}_version" in tables


def tables_reusing_ids(conn, tables: list[str]) -> list[str]:
    """Of `tables` (single-column integer ids), those that could give a deleted row's id to a new row: on SQLite the
    tables without AUTOINCREMENT (SQLite reuses max(rowid) + 1), on PostgreSQL ids not drawn from a sequence."""
    from sqlalchemy import inspect

    if conn.dialect.name == "sqlite":
        ddl = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
        return [t for t in tables if "AUTOINCREMENT" not in ddl[t].upper()]
    inspector = inspect(conn)

    def from_a_sequence(column: dict) -> bool:
        return bool(column.get("identity")) or "nextval(" in str(column.get("default"))

    return [t for t in tables if not any(c["name"] == "id" and from_a_sequence(c) for c in inspector.get_columns(t))]


def test_every_versioned_table_never_reuses_an_id(app):
    """A reused id would join a new record to a deleted one's history (core.db.table_args, `sqlite_autoincrement=True`
    in the migrations)."""
    from core.db import versioned_classes

    tables = [cls.__table__.name for cls in versioned_classes() if len(cls.__table__.primary_key.columns) == 1]
    with db.engine.connect() as conn:
        reusing = tables_reusing_ids(conn, tables)
    assert tables and reusing == [], f"these tables may give a deleted row's id to a new one: {reusing}"
