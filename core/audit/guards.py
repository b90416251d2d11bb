"""Database triggers that make the audit trail append-only for every database account.

The application never updates or deletes audit data, and the database refuses it too: audit events and signatures
can only be inserted; version rows can be written only while their own transaction is still open (Continuum rewrites
the version row of a record flushed twice in one transaction) and never once it is sealed; an audit transaction can be
updated only until it is sealed (its hash set); the chain head only advances one position at a time. A database
superuser can still drop the triggers; the hash chain (`flask audit verify`) detects what such a person changes.

Every migration that creates a version table calls `install(op, [table])`; tests/integration/test_audit_guards.py
fails for a version table without guards.
"""

from __future__ import annotations

from collections.abc import Iterable

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION attest_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit data is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""


PG_VERSION_FUNCTION = """
CREATE OR REPLACE FUNCTION attest_version_append_only() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_transaction WHERE id = OLD.transaction_id AND hash IS NULL) THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit data is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""

# a version row may change only while its transaction exists and is not sealed yet
_SQLITE_SEALED = ("WHEN COALESCE((SELECT hash IS NULL FROM audit_transaction WHERE id = OLD.transaction_id), 0) = 0")


def _sqlite_block(name: str, table: str, op: str, when: str = "") -> str:
    return (f'CREATE TRIGGER "{name}" BEFORE {op} ON "{table}" {when} '
            f"BEGIN SELECT RAISE(ABORT, 'audit data is append-only: {op} on {table} refused'); END")


def _pg_block(name: str, table: str, ops: str, when: str = "") -> str:
    return (f'CREATE TRIGGER "{name}" BEFORE {ops} ON "{table}" FOR EACH ROW {when} '
            f"EXECUTE FUNCTION attest_audit_append_only()")


def statements(dialect: str, tables: Iterable[str], *, versions: bool = True) -> list[str]:
    """DDL guarding `tables` against UPDATE and DELETE: version tables (`versions=True`) once their transaction is
    sealed; other tables (audit events, signatures) always."""
    out = []
    if dialect == "postgresql":
        out.append(PG_VERSION_FUNCTION if versions else PG_FUNCTION)
        function = "attest_version_append_only()" if versions else "attest_audit_append_only()"
        for t in tables:
            out.append(f'CREATE TRIGGER "{t}_append_only" BEFORE UPDATE OR DELETE ON "{t}" FOR EACH ROW '
                       f"EXECUTE FUNCTION {function}")
    else:
        when = _SQLITE_SEALED if versions else ""
        for t in tables:
            out.append(_sqlite_block(f"{t}_no_update", t, "UPDATE", when))
            out.append(_sqlite_block(f"{t}_no_delete", t, "DELETE", when))
    return out


def core_statements(dialect: str) -> list[str]:
    """DDL for the transaction table (sealed rows are frozen) and the chain head (advances by one, never deleted)."""
    if dialect == "postgresql":
        return [
            PG_FUNCTION,
            _pg_block("audit_transaction_no_delete", "audit_transaction", "DELETE"),
            _pg_block("audit_transaction_sealed", "audit_transaction", "UPDATE", "WHEN (OLD.hash IS NOT NULL)"),
            _pg_block("audit_chain_head_no_delete", "audit_chain_head", "DELETE"),
            _pg_block("audit_chain_head_advance", "audit_chain_head", "UPDATE",
                      "WHEN (NEW.seq <> OLD.seq + 1 OR NEW.id <> OLD.id)"),
        ]
    return [
        _sqlite_block("audit_transaction_no_delete", "audit_transaction", "DELETE"),
        _sqlite_block("audit_transaction_sealed", "audit_transaction", "UPDATE", "WHEN OLD.hash IS NOT NULL"),
        _sqlite_block("audit_chain_head_no_delete", "audit_chain_head", "DELETE"),
        _sqlite_block("audit_chain_head_advance", "audit_chain_head", "UPDATE",
                      "WHEN NEW.seq <> OLD.seq + 1 OR NEW.id <> OLD.id"),
    ]


def install(op, tables: Iterable[str], *, versions: bool = True) -> None:
    """Call from an Alembic migration: guard version tables (default) or, with versions=False, tables whose rows are
    never changed at all (audit events, signatures)."""
    dialect = op.get_bind().dialect.name
    for sql in statements(dialect, list(tables), versions=versions):
        op.execute(sql)


def uninstall(op, tables: Iterable[str]) -> None:
    dialect = op.get_bind().dialect.name
    for t in tables:
        if dialect == "postgresql":
            op.execute(f'DROP TRIGGER IF EXISTS "{t}_append_only" ON "{t}"')
        else:
            op.execute(f'DROP TRIGGER IF EXISTS "{t}_no_update"')
            op.execute(f'DROP TRIGGER IF EXISTS "{t}_no_delete"')


def reinstall(op, tables: Iterable[str], *, versions: bool = True) -> None:
    """Call after `op.batch_alter_table` changed guarded tables: on SQLite, Alembic rebuilds a table to drop a column
    (create a copy, drop the old table, rename), and the old table's triggers go with it. Same result on PostgreSQL,
    whose ALTER TABLE keeps them."""
    tables = list(tables)
    uninstall(op, tables)
    install(op, tables, versions=versions)
