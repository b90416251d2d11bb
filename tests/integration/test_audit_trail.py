"""The audit trail: who/when/what/why on every change, security events, and tamper detection by `flask audit verify`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import audit
from core.audit import AuditEvent, AuditTransaction
from core.audit.views import record_history
from core.auth import services
from core.auth.models import User
from core.clock import freeze
from core.db import db, transaction
from core.org import Site
from core.testing.tamper import superuser


def _verify_cli(app):
    return app.test_cli_runner().invoke(args=["audit", "verify"])


def test_update_records_old_and_new_values_user_time_and_reason(app, make_user):
    from datetime import UTC, datetime

    admin = make_user("admin1", roles={"system_admin"})
    target = make_user("target", full_name="Old Name")
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    freeze(when)
    with transaction(reason="Name corrected after marriage"), audit.acting_as(admin):
        services.update_profile(target, full_name="New Name", email=target.email, site_id=None,
                                department_id=None, supervisor_id=None, timezone=None)
    history = record_history(User, target.id)
    assert [e.changes[0].action for e in history] == ["Created", "Changed"]
    last = history[-1]
    assert last.tx.username == "admin1"
    assert last.tx.printed_name == admin.full_name
    assert last.tx.reason == "Name corrected after marriage"
    assert last.tx.issued_at == when
    assert ("Full printed name", "Old Name", "New Name") in last.changes[0].fields
    assert len(last.changes[0].fields) == 1


def test_edit_of_a_record_without_reason_is_refused_and_nothing_is_written(app, make_user):
    target = make_user("target2", full_name="Kept Name")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction))
    try:
        with transaction():
            target.full_name = "Sneaky"
            db.session.flush()
    except audit.ReasonRequired as exc:
        assert "reason for change is required" in str(exc)
    else:
        raise AssertionError("an edit without a reason was accepted")
    db.session.expire_all()
    assert db.session.get(User, target.id).full_name == "Kept Name"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction)) == before


def test_gxp_records_cannot_be_deleted(app):
    with transaction():
        site = Site(code="S1", name="Site one")
        db.session.add(site)
    try:
        with transaction(reason="try to delete"):
            db.session.delete(site)
    except audit.DeleteRefused as exc:
        assert "cannot be deleted" in str(exc)
    else:
        raise AssertionError("a GxP record was deleted")
    assert db.session.get(Site, site.id) is not None


def test_security_event_is_recorded_with_actor_and_subject(app, make_user):
    user = make_user("eve")
    with transaction():
        services.authenticate("eve", "wrong password entirely")
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event_type == "login.failure")).one()
    tx = db.session.get(AuditTransaction, event.transaction_id)
    assert event.subject_user_id == user.id
    assert tx.username == "eve" and tx.chain_seq is not None and tx.hash


def test_verify_passes_on_untouched_data(app, make_user):
    make_user("a1")
    make_user("a2")
    result = _verify_cli(app)
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output
    assert "checked 2 transactions" in result.output


def test_direct_sql_update_of_a_live_record_is_detected(app, make_user):
    user = make_user("victim", full_name="Victor Victim")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE core_user SET full_name = 'Mallory' WHERE id = {user.id}")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert f"core_user id={user.id} was changed outside the application (fields: full_name)" in result.output


def test_direct_sql_delete_of_a_live_record_is_detected(app):
    with transaction():
        db.session.add(Site(code="DEL", name="To be deleted"))
    site_id = db.session.scalar(sa.select(Site.id).where(Site.code == "DEL"))
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM core_site WHERE id = {site_id}")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert f"core_site id={site_id} was deleted outside the application" in result.output


def test_direct_sql_insert_of_a_live_record_is_detected(app):
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO core_site (code, name, timezone) VALUES ('X', 'Injected', 'UTC')")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert "was created outside the application" in result.output


def test_altered_version_row_breaks_the_chain_at_its_transaction(app, make_user):
    make_user("first")
    victim = make_user("second", full_name="Second User")
    make_user("third")
    vcls = version_class(User)
    tx_id = db.session.scalar(sa.select(vcls.transaction_id).where(vcls.id == victim.id))
    with superuser(db.engine) as conn:
        conn.exec_driver_sql(f"UPDATE core_user_version SET full_name = 'Forged' WHERE id = {victim.id}")
        conn.exec_driver_sql(f"UPDATE core_user SET full_name = 'Forged' WHERE id = {victim.id}")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert f"chain broken at transaction {tx_id}" in result.output


def test_deleted_audit_event_breaks_the_chain(app, make_user):
    make_user("someone")
    with transaction():
        services.authenticate("someone", "not the password at all")
    make_user("later")
    event = db.session.scalars(sa.select(AuditEvent)).one()
    with superuser(db.engine) as conn:
        conn.exec_driver_sql(f"DELETE FROM audit_event WHERE id = {event.id}")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert f"chain broken at transaction {event.transaction_id}" in result.output


def test_deleted_transaction_is_detected(app, make_user):
    make_user("one")
    make_user("two")
    make_user("three")
    middle = db.session.scalars(sa.select(AuditTransaction).where(AuditTransaction.chain_seq == 2)).one()
    with superuser(db.engine) as conn:
        for table in ("core_user_version", "core_user_role_version"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE transaction_id = {middle.id}")
        conn.exec_driver_sql(f"DELETE FROM audit_transaction WHERE id = {middle.id}")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert "chain broken before transaction" in result.output


def test_deleting_the_newest_transaction_is_detected_by_the_chain_head(app, make_user):
    make_user("one")
    make_user("two")
    last = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.chain_seq.desc())).first()
    with superuser(db.engine) as conn:
        conn.exec_driver_sql(f"DELETE FROM core_user_version WHERE transaction_id = {last.id}")
        conn.exec_driver_sql(f"DELETE FROM audit_transaction WHERE id = {last.id}")
        conn.exec_driver_sql("DELETE FROM core_user_security WHERE user_id = (SELECT max(id) FROM core_user)")
        conn.exec_driver_sql("DELETE FROM core_password_history WHERE user_id = (SELECT max(id) FROM core_user)")
        conn.exec_driver_sql("DELETE FROM core_user WHERE id = (SELECT max(id) FROM core_user)")
    result = _verify_cli(app)
    assert result.exit_code != 0
    assert "chain head does not match" in result.output


def test_each_transaction_hash_covers_the_previous_one(app, make_user):
    make_user("one")
    make_user("two")
    txs = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.chain_seq)).all()
    assert [t.chain_seq for t in txs] == [1, 2]
    assert txs[0].prev_hash == audit.GENESIS
    assert txs[1].prev_hash == txs[0].hash


def test_a_column_added_later_with_a_default_is_not_reported_but_a_change_to_it_is(app, make_user):
    """A migration that adds a column with a server default leaves it NULL in earlier version rows (their hashes must
    not change) while live rows hold the default: that is no change outside the application; any other value is."""
    from features.support.documents import new_document, setup_people

    document = new_document(setup_people(make_user))
    with superuser(db.engine) as conn:  # as if the document had been created before the column existed
        conn.exec_driver_sql(f"UPDATE qms_document_version SET min_read_seconds = NULL WHERE id = {document.id}")
    # (the hash of that transaction no longer matches; only the record comparison is asserted here)
    result = audit.verify(db.engine)
    assert not [p for p in result.record_problems if "qms_document" in p]
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE qms_document SET min_read_seconds = 600 WHERE id = {document.id}")
    result = audit.verify(db.engine)
    assert f"qms_document id={document.id} was changed outside the application (fields: min_read_seconds)" in \
        result.record_problems


def test_a_revoked_grants_id_is_never_reused_so_each_grant_keeps_its_own_history(app, make_user):
    """Revoking a role deletes its grant row (its history stays). SQLite would give the next row the deleted row's
    id (max(rowid) + 1) and the new grant would inherit the old one's history; versioned tables are created with
    AUTOINCREMENT there (core.db.table_args). PostgreSQL's sequences never go back."""
    from core.auth.models import UserRole

    admin = make_user("admin.roles", roles={"system_admin"})
    person = make_user("rene.roles", roles={"operator"})
    [revoked_id] = [g.id for g in person.role_grants]
    assert revoked_id == db.session.scalar(sa.select(sa.func.max(UserRole.id))), "the newest row: the one reused"
    with transaction(reason="Left the line"):
        services.set_roles(person, set(), actor=admin)
    with transaction(reason="Joined QA audit"):
        services.set_roles(person, {"auditor"}, actor=admin)
    [granted_id] = [g.id for g in person.role_grants]

    assert granted_id > revoked_id
    assert [e.changes[0].action for e in record_history(UserRole, granted_id)] == ["Created"]
    assert [e.changes[0].action for e in record_history(UserRole, revoked_id)] == ["Created", "Deleted"]
    assert _verify_cli(app).exit_code == 0
