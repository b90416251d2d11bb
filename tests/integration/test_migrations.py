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
