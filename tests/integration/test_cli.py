"""Command-line administration: every command is one audited unit of work attributed to a system action."""

from __future__ import annotations

import sqlalchemy as sa

from core.audit import AuditEvent, AuditTransaction
from core.auth import services
from core.auth.models import User
from core.db import db, transaction


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_users_create_prints_a_temporary_password_that_must_be_changed(app):
    result = _cli(app, "users", "create", "boot.admin", "--full-name", "Bea Bootstrap", "--email", "bea@example.com",
                  "--roles", "system_admin")
    assert result.exit_code == 0, result.output
    assert "created user boot.admin" in result.output
    assert "temporary password" in result.output
    user = services.get_by_username("boot.admin")
    assert user.security.must_change_password is True
    tx = db.session.scalars(sa.select(AuditTransaction).where(AuditTransaction.channel == "cli")).one()
    assert tx.printed_name.startswith("system (command line")


def test_users_create_refuses_bad_input_naming_the_rule(app):
    result = _cli(app, "users", "create", "Bad Name!", "--full-name", "X Y", "--email", "x@example.com")
    assert result.exit_code != 0
    assert "Username must be" in result.output
    result = _cli(app, "users", "create", "ok.name", "--full-name", "Okay Name", "--email", "x@example.com",
                  "--roles", "system_admin,qa_approver")
    assert result.exit_code != 0
    assert "Segregation of duties" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_users_list_shows_roles_and_status(app, make_user):
    make_user("listed", roles={"operator"})
    result = _cli(app, "users", "list")
    assert result.exit_code == 0
    assert "listed" in result.output and "operator" in result.output


def test_users_unlock_requires_a_reason_and_is_audited(app, make_user):
    user = make_user("locked.out", roles={"operator"})
    with transaction():
        for _ in range(5):
            services.authenticate("locked.out", "wrong wrong wrong")
    db.session.refresh(user.security)
    assert user.security.locked
    assert _cli(app, "users", "unlock", "locked.out").exit_code != 0  # --reason is required
    result = _cli(app, "users", "unlock", "locked.out", "--reason", "Identity confirmed by phone")
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert not db.session.get(User, user.id).security.locked
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event_type == "account.unlocked")).one()
    assert db.session.get(AuditTransaction, event.transaction_id).reason == "Identity confirmed by phone"


def test_users_reset_totp_and_set_roles(app, make_user):
    make_user("signer", roles={"qa_approver"}, totp=True)
    result = _cli(app, "users", "reset-totp", "signer", "--reason", "Phone lost")
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert services.get_by_username("signer").security.totp_secret is None
    result = _cli(app, "users", "set-roles", "signer", "qa_approver,auditor", "--reason", "Joined audit team")
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert services.get_by_username("signer").role_codes == {"qa_approver", "auditor"}
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event_type == "roles.changed")).one()
    assert '"new": ["auditor", "qa_approver"]' in event.detail


def test_demo_load_is_idempotent_and_prints_the_demo_logins(app):
    first = _cli(app, "demo", "load", "--users", "40", "--documents", "40")
    assert first.exit_code == 0, first.output
    assert "qa.approver" in first.output and "Attest-Demo-2026!" in first.output
    count = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    assert count == 41  # 40 and the change owner of the demo change controls
    second = _cli(app, "demo", "load", "--users", "40", "--documents", "40")
    assert second.exit_code == 0
    assert "0 users created" in second.output and "0 documents created" in second.output
    assert "demo quality events skipped" in second.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 41
    roles = {r for u in db.session.scalars(sa.select(User)) for r in u.role_codes}
    assert len(roles) == 8
    from qms.documents.models import STATUS_LABELS, Document, Revision
    from signatures.models import Signature

    assert db.session.scalar(sa.select(sa.func.count()).select_from(Document)) == 40
    statuses = set(db.session.scalars(sa.select(Revision.status).distinct()))
    assert statuses == set(STATUS_LABELS), f"demo documents miss states: {set(STATUS_LABELS) - statuses}"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) > 40
    from core.clock import now_utc
    from core.org import JobFunction
    from training.models import TrainingAssignment, TrainingRequirement

    statuses = dict(db.session.execute(sa.select(TrainingAssignment.status, sa.func.count())
                                       .group_by(TrainingAssignment.status)).all())
    assert statuses.get("completed", 0) > 0 and statuses.get("open", 0) > 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment).where(
        TrainingAssignment.status == "open", TrainingAssignment.due_on < now_utc().date())) > 0  # some overdue
    without = db.session.scalar(sa.select(sa.func.count()).select_from(JobFunction).where(
        ~JobFunction.id.in_(sa.select(TrainingRequirement.target_id))))
    assert without == 0  # the matrix covers every job function
    from qms.capa.models import STATUS_LABELS as CAPA_STATES
    from qms.capa.models import Capa
    from qms.change_control.models import STATUS_LABELS as CHANGE_STATES
    from qms.change_control.models import ChangeControl
    from qms.deviations.models import STATUS_LABELS as DEVIATION_STATES
    from qms.deviations.models import Deviation

    for model, states in ((ChangeControl, CHANGE_STATES), (Deviation, DEVIATION_STATES), (Capa, CAPA_STATES)):
        have = set(db.session.scalars(sa.select(model.status).distinct()))
        assert have == set(states), f"demo {model.__name__} misses states: {set(states) - have}"
    linked = db.session.scalars(sa.select(Deviation).where(Deviation.capa_id.is_not(None))).all()
    assert {d.status for d in linked} >= {"closed", "pending_approval"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment).where(
        TrainingAssignment.source_type == "capa_action")) > 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ChangeControl).where(
        ChangeControl.closure_override_note.is_not(None))) == 1
    from validation import services as validation
    from validation.models import ProtocolVersion

    files = validation.protocol_files()
    assert files and all(f.state == "approved" for f in files)
    assert {f.path for f in files if f.kind == validation.STEP_CODE_KIND} == {
        "features/iq (step code)", "features/oq (step code)", "features/pq (step code)",
        "validation/canaries (step code)"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ProtocolVersion)) == len(files)
    assert "demo validation skipped" in second.output
    assert _cli(app, "audit", "verify").exit_code == 0
