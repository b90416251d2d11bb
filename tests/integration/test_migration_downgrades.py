"""Migrations step down as well as up, on each database, and the audit trail stays append-only at every step.

The guards are dialect-specific DDL (core/audit/guards.py): one PL/pgSQL trigger per table on PostgreSQL, two
`RAISE(ABORT)` triggers on SQLite, removed by name (`DROP TRIGGER ... ON table` on PostgreSQL only). On SQLite,
Alembic's batch mode rebuilds a table to drop a column, and the rebuilt table loses its triggers and AUTOINCREMENT
unless the migration restores them: the 0005 and 0006 downgrades left four version tables of document control and
training unguarded, and their records' tables reusing ids, until they did.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy.engine import make_url

from testkit.plugin import _test_config, postgres_database
from tests.integration.test_migrations import tables_reusing_ids

CORE_GUARDS = {
    ("audit_transaction", "audit_transaction_no_delete"), ("audit_transaction", "audit_transaction_sealed"),
    ("audit_chain_head", "audit_chain_head_no_delete"), ("audit_chain_head", "audit_chain_head_advance"),
}
ALWAYS_GUARDED = ("audit_event", "sig_signature")  # never changed at all, unlike version rows of an open transaction


@pytest.fixture
def scratch_url(database_url, tmp_path) -> Iterator[str]:
    """A database of this test's own at the migration head: a copy of the suite's migrated template on SQLite, a
    database migrated for the test on PostgreSQL (the suite's own is shared by every test)."""
    if not database_url.startswith("postgresql"):
        copy = tmp_path / "downgraded.db"
        shutil.copyfile(make_url(database_url).database, copy)
        yield f"sqlite:///{copy}"
        return
    with postgres_database(database_url, prefix="attest_downgrade") as url:
        yield url


def _catalog(conn: sa.Connection) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """(tables, (table, trigger) pairs, trigger functions) as the database itself lists them."""
    tables = set(sa.inspect(conn).get_table_names())
    if conn.dialect.name == "postgresql":
        triggers = set(map(tuple, conn.exec_driver_sql("SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                                                       "WHERE NOT tgisinternal")))
        functions = set(conn.exec_driver_sql("SELECT proname FROM pg_proc WHERE starts_with(proname, 'attest')")
                        .scalars())
    else:
        triggers = set(map(tuple, conn.exec_driver_sql("SELECT tbl_name, name FROM sqlite_master "
                                                       "WHERE type = 'trigger'")))
        functions = set()
    return tables, triggers, functions


def _expected_guards(conn: sa.Connection, tables: set[str]) -> set[tuple[str, str]]:
    """The guards every table present must have: version tables (those with transaction_id and operation_type),
    the audit events and signatures, the transaction table and the chain head."""
    inspector = sa.inspect(conn)
    guarded = [t for t in tables if {"transaction_id", "operation_type"} <= {c["name"] for c in
                                                                             inspector.get_columns(t)}]
    guarded += [t for t in ALWAYS_GUARDED if t in tables]
    postgres = conn.dialect.name == "postgresql"
    names = (lambda t: [f"{t}_append_only"]) if postgres else (lambda t: [f"{t}_no_update", f"{t}_no_delete"])
    expected = {(t, name) for t in guarded for name in names(t)}
    return expected | {pair for pair in CORE_GUARDS if pair[0] in tables}


def test_each_downgrade_step_keeps_every_remaining_audit_table_append_only_and_base_leaves_nothing(scratch_url):
    from app import create_app
    from core.db import db

    app = create_app(_test_config(scratch_url))
    with app.app_context():
        if scratch_url.startswith("postgresql"):
            upgrade()
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        steps = [rev.down_revision or "base" for rev in script.walk_revisions()]  # head's parent first
        for target in steps:
            downgrade(revision=target)
            with db.engine.connect() as conn:
                tables, triggers, functions = _catalog(conn)
                expected = _expected_guards(conn, tables) if target not in ("0001", "base") else set()
                reusing = tables_reusing_ids(conn, sorted(t for t in tables if f"{t}_version" in tables))
            assert expected <= triggers, (f"after the downgrade to {target}, these audit tables accept UPDATE or "
                                          f"DELETE: {sorted(expected - triggers)}")
            assert reusing == [], f"after the downgrade to {target}, these tables may reuse a deleted row's id: " \
                                  f"{reusing}"
            if target == "0001":  # the audit tables exist; their guards came with 0002
                assert not triggers and {"audit_transaction", "core_user_version"} <= tables
        assert tables == {"alembic_version"} and not triggers
        assert not functions, f"the downgrade to base left trigger functions behind: {functions}"
        db.engine.dispose()
