"""The database itself refuses to change or remove audit data, whoever connects (short of a superuser)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.db import db, transaction, versioned_classes
from core.org import Department, JobFunction, Site
from core.testing.tamper import superuser


@pytest.fixture
def audited(app, make_user):
    make_user("someone", roles={"operator"})  # a sealed transaction with user and role grant version rows
    from core.db import transaction

    with transaction():
        site = Site(code="G1", name="Guarded")
        db.session.add(site)
        db.session.flush()
        dept = Department(site_id=site.id, code="D1", name="Guarded dept")
        db.session.add(dept)
        db.session.flush()
        db.session.add(JobFunction(code="J1", name="Guarded function", department_id=dept.id))
    from core import audit

    with transaction():
        audit.record_event("login.failure", subject_username="nobody")


def _refused(sql: str) -> str:
    with pytest.raises(sa.exc.DBAPIError) as info, db.engine.begin() as conn:
        conn.exec_driver_sql(sql)
    return str(info.value)


def _version_tables() -> list[str]:
    from sqlalchemy_continuum import version_class

    return [version_class(cls).__table__.name for cls in versioned_classes()]


def _guard_triggers() -> set[str]:
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            return set(conn.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").scalars())
        return set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())


def test_every_version_table_has_an_append_only_guard(app):
    """A migration that adds a versioned model must call core.audit.guards.install() for its version table."""
    triggers = _guard_triggers()
    postgres = db.engine.dialect.name == "postgresql"
    for table in [*_version_tables(), "audit_event"]:
        expected = {f"{table}_append_only"} if postgres else {f"{table}_no_update", f"{table}_no_delete"}
        assert expected <= triggers, f"{table} has no append-only trigger"


def test_version_tables_refuse_update_and_delete(audited):
    populated = []
    for table in _version_tables():
        with db.engine.connect() as conn:
            if not conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar():
                continue  # a row trigger needs a row; the catalog test above covers the others
        populated.append(table)
        assert "append-only" in _refused(f'UPDATE "{table}" SET operation_type = operation_type'), table
        assert "append-only" in _refused(f'DELETE FROM "{table}"'), table
    assert {"core_user_version", "core_user_role_version", "core_site_version", "core_department_version",
            "core_job_function_version"} <= set(populated)


def test_audit_events_refuse_update_and_delete(audited):
    assert "append-only" in _refused("UPDATE audit_event SET event_type = 'logout'")
    assert "append-only" in _refused("DELETE FROM audit_event")


def test_sealed_audit_transactions_refuse_update_and_delete(audited):
    assert "append-only" in _refused("UPDATE audit_transaction SET reason = 'rewritten'")
    assert "append-only" in _refused('DELETE FROM audit_transaction')


def test_chain_head_only_advances_one_step_and_cannot_be_deleted(audited):
    assert "append-only" in _refused("UPDATE audit_chain_head SET seq = seq + 5")
    assert "append-only" in _refused("UPDATE audit_chain_head SET seq = 0")
    assert "append-only" in _refused("DELETE FROM audit_chain_head")


def test_the_guards_do_not_hinder_the_application_and_survive_a_superuser_session(audited, app):
    with superuser(db.engine) as conn:
        conn.exec_driver_sql("UPDATE audit_event SET detail = '{}' WHERE 1 = 0")
    assert "append-only" in _refused("DELETE FROM audit_event")
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_a_record_flushed_twice_in_one_transaction_is_still_audited(app):
    """Continuum rewrites the version row of a record flushed twice in one transaction; the guard allows that
    until the transaction is sealed, and the audit trail keeps the final values."""
    with transaction():
        site = Site(code="TW", name="First name")
        db.session.add(site)
        db.session.flush()
        site.name = "Second name"
        db.session.flush()
        site.timezone = "Europe/Zurich"
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    from core.audit.views import record_history

    entry = record_history(Site, site.id)[-1]
    assert ("Name", "", "Second name") in entry.changes[0].fields
