"""The change control lifecycle: signed steps, drafts started and linked from the change, closure gated on the
revisions taking effect and their training being complete (or a signed QA override naming who is outstanding)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import clock
from core.audit import AuditTransaction
from core.db import db
from core.errors import InvalidTransition, NotPermitted, ValidationError
from features.support.documents import (
    approve_as,
    count,
    effective_revision,
    hold,
    new_document,
    prove,
    review_as,
    route,
    run,
    submit,
    train,
)
from qms.change_control import services as cc
from qms.change_control.models import (
    APPROVED,
    CANCELLED,
    CLOSED,
    DRAFT,
    IMPLEMENTATION,
    SUBMITTED,
    VERIFICATION,
    ChangeControl,
    ChangeTask,
)
from qms.documents import services as docs
from qms.documents.models import DRAFT as REVISION_DRAFT
from qms.documents.models import Revision
from signatures import models as sig


@pytest.fixture
def owner(make_user):
    """Raises changes and, as a document author, starts the affected documents' drafts."""
    return make_user("carl.change", roles={"supervisor", "document_author"}, full_name="Carl Change")


def fields(owner, **overrides):
    return {"title": "New line clearance checklist", "description": "Add a signed checklist step before mixing.",
            "justification": "Deviation follow-up: line clearance was skipped.", "change_type": "document",
            "risk_level": "medium", "risk_rationale": "Procedure change; no product impact.",
            "owner_id": owner.id, **overrides}


def version(change):
    db.session.refresh(change)
    return change.row_version


def new_change(owner, documents=(), **overrides):
    return run(cc.create_change, actor=owner, document_ids=[d.id for d in documents], **fields(owner, **overrides))


def signed(action, change, user, **kwargs):
    proof = prove(user)
    return run(action, change, actor=user, proof=proof, expected_row_version=version(change), **kwargs)


def approved_change(p, owner, documents=()):
    change = new_change(owner, documents)
    signed(cc.submit, change, owner)
    signed(cc.approve, change, p.qa)
    return change


def implement(p, owner, change):
    """Start, take every started draft to effective today, finish the tasks, move to verification."""
    run(cc.start_implementation, change, actor=owner, expected_row_version=version(change))
    revisions = []
    for row in change.documents:
        revision = db.session.get(Revision, row.revision_id)
        route(p, revision, actor=owner)
        submit(p, revision, actor=owner)
        review_as(p.reviewer, revision)
        approve_as(p.qa, revision, effective_on=clock.now_utc().date())
        revisions.append(revision)
    run(docs.release_due, clock.now_utc().date())
    run(cc.to_verification, change, actor=owner, expected_row_version=version(change))
    for revision in revisions:
        db.session.refresh(revision)
    return revisions


def test_lifecycle_with_signatures_drafts_started_and_linked_and_closure_when_trained(app, p, owner, make_user):
    operators = [make_user("olga.op", roles={"operator"}, full_name="Olga Op")]
    hold(operators, p.job_function_id)
    document = new_document(p)
    first = effective_revision(p, document)
    train(operators[0], first)
    change = new_change(owner, [document])
    assert change.number == f"CC-{clock.now_utc().year}-0001" and change.status == DRAFT

    signed(cc.submit, change, owner)
    assert change.status == SUBMITTED
    signed(cc.reject, change, p.qa, comment="Add the risk to batch release.")
    assert change.status == DRAFT
    run(cc.update_change, change, actor=owner, expected_row_version=version(change),
        **fields(owner, risk_rationale="Procedure change; batch release unaffected."))
    signed(cc.submit, change, owner)
    signed(cc.approve, change, p.qa, comment="Go ahead.")
    assert change.status == APPROVED and change.approved_at is not None

    task = run(cc.add_task, change, actor=owner, title="Print the checklist", owner_id=p.operator.id,
               due_on=clock.now_utc().date() + timedelta(days=3))
    run(cc.start_implementation, change, actor=owner, expected_row_version=version(change))
    assert change.status == IMPLEMENTATION
    draft = db.session.get(Revision, change.documents[0].revision_id)
    assert (draft.status, draft.label, draft.author_id) == (REVISION_DRAFT, "2.0", owner.id)
    assert change.number in draft.change_summary and change.number in draft.reason
    assert draft.content_markdown == first.content_markdown

    with pytest.raises(InvalidTransition, match="open tasks: Print the checklist"):
        run(cc.to_verification, change, actor=owner, expected_row_version=version(change))
    run(cc.set_task_status, task, actor=p.operator, status="done")
    route(p, draft, actor=owner)
    submit(p, draft, actor=owner)
    review_as(p.reviewer, draft)
    approve_as(p.qa, draft, effective_on=clock.now_utc().date())
    run(cc.to_verification, change, actor=owner, expected_row_version=version(change))
    assert change.status == VERIFICATION

    # not yet effective: refused, naming the revision
    with pytest.raises(InvalidTransition, match=r"not yet effective: SOP-QA-001 revision 2\.0"):
        signed(cc.close, change, p.qa)
    run(docs.release_due, clock.now_utc().date())
    with pytest.raises(InvalidTransition, match=r"1 training assignment\(s\) are still open: Olga Op \(olga.op\) "
                                                r"on SOP-QA-001 2\.0"):
        signed(cc.close, change, p.qa)
    assert change.status == VERIFICATION
    progress = cc.progress(change)[0]
    assert (progress.assigned, progress.completed, progress.open) == (1, 0, 1)
    assert [(user.username, a.status) for a, user in progress.assignments] == [("olga.op", "open")]

    db.session.refresh(draft)
    train(operators[0], draft)
    signed(cc.close, change, p.qa)
    assert change.status == CLOSED and change.closed_at is not None and change.closure_override_note is None
    meanings = [s.meaning for s in db.session.scalars(
        sa.select(sig.Signature).where(sig.Signature.record_type == "qms_change_control").order_by(sig.Signature.id))]
    assert meanings == [sig.AUTHORED, sig.REJECTED, sig.AUTHORED, sig.APPROVED, sig.VERIFIED]
    assert count(version_class(ChangeControl)) >= 7
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_qa_closes_with_open_training_by_signing_a_justification_naming_the_people(app, p, owner, make_user):
    operators = [make_user("olga.op", roles={"operator"}, full_name="Olga Op"),
                 make_user("oscar.op", roles={"operator"}, full_name="Oscar Op")]
    hold(operators, p.job_function_id)
    document = new_document(p)
    effective_revision(p, document)
    change = approved_change(p, owner, [document])
    implement(p, owner, change)
    train(operators[0], db.session.get(Revision, change.documents[0].revision_id))

    with pytest.raises(ValidationError, match="justification is required"):
        signed(cc.close_with_open_training, change, p.qa, justification=" ")
    with pytest.raises(NotPermitted, match="quality.approve"):
        signed(cc.close_with_open_training, change, owner, justification="Needed")
    signed(cc.close_with_open_training, change, p.qa, justification="Oscar is on leave; trains on return.")
    assert change.status == CLOSED
    note = change.closure_override_note
    assert note.startswith("Oscar is on leave; trains on return. — not yet trained (1): Oscar Op (oscar.op) on "
                           "SOP-QA-001 2.0")
    assert "Olga" not in note
    signature = db.session.scalars(sa.select(sig.Signature).where(
        sig.Signature.record_type == "qms_change_control").order_by(sig.Signature.id.desc())).first()
    assert signature.meaning == sig.APPROVED_DESPITE_TRAINING
    listed = hashlib.sha256(b"Oscar Op (oscar.op) on SOP-QA-001 2.0").hexdigest()
    assert listed in signature.comment


def test_override_is_refused_when_everyone_has_trained_and_close_needs_no_override(app, p, owner):
    document = new_document(p)
    effective_revision(p, document)
    change = approved_change(p, owner, [document])
    implement(p, owner, change)
    with pytest.raises(InvalidTransition, match="has trained"):
        signed(cc.close_with_open_training, change, p.qa, justification="Not needed")
    signed(cc.close, change, p.qa)
    assert change.status == CLOSED


def test_start_is_refused_whole_when_a_document_already_has_an_open_revision(app, p, owner):
    one, two = new_document(p), new_document(p, number="SOP-QA-002")
    effective_revision(p, one)
    effective_revision(p, two)
    change = approved_change(p, owner, [one, two])
    run(docs.start_revision, two, author=p.author, major=False, change_summary="Typo", reason="Typo",
        content_markdown="# x\n")
    revisions = count(Revision)
    with pytest.raises(InvalidTransition, match="SOP-QA-002 already has an open revision"):
        run(cc.start_implementation, change, actor=owner, expected_row_version=version(change))
    db.session.expire_all()
    assert count(Revision) == revisions and change.status == APPROVED
    assert all(row.revision_id is None for row in change.documents)


def test_bad_input_is_refused_with_the_field_and_nothing_is_written(app, p, owner):
    for overrides, field_name in [({"title": " "}, "title"), ({"change_type": "magic"}, "change_type"),
                                  ({"risk_level": "extreme"}, "risk_level"), ({"risk_rationale": ""}, "risk_rationale"),
                                  ({"owner_id": p.operator.id}, "owner_id"), ({"owner_id": None}, "owner_id")]:
        with pytest.raises(ValidationError) as exc:
            new_change(owner, **overrides)
        assert exc.value.field == field_name
    with pytest.raises(ValidationError, match="Unknown document"):
        run(cc.create_change, actor=owner, document_ids=[999], **fields(owner))
    assert count(ChangeControl) == 0
    change = new_change(owner)
    assert change.number.endswith("-0001")  # the refused attempts took no number
    with pytest.raises(ValidationError) as exc:
        run(cc.add_task, change, actor=owner, title="Task", owner_id=p.operator.id, due_on=None)
    assert exc.value.field == "due_on" and count(ChangeTask) == 0


def test_edits_after_draft_need_a_reason_and_scope_is_fixed_once_submitted(app, p, owner):
    document = new_document(p)
    change = approved_change(p, owner)
    with pytest.raises(ValidationError, match="reason for change is required"):
        run(cc.update_change, change, actor=owner, expected_row_version=version(change),
            **fields(owner, title="Sharper title"))
    run(cc.update_change, change, actor=owner, expected_row_version=version(change),
        **fields(owner, title="Sharper title"), audit_reason="Title clarified by QA")
    assert change.title == "Sharper title"
    reason = db.session.scalar(sa.select(AuditTransaction.reason).order_by(AuditTransaction.id.desc()).limit(1))
    assert reason == "Title clarified by QA"
    with pytest.raises(InvalidTransition, match="only a change control in Draft"):
        run(cc.set_scope, change, actor=owner, expected_row_version=version(change), document_ids=[document.id],
            job_function_ids=[])
    with pytest.raises(InvalidTransition, match="changed since the page was loaded"):
        run(cc.update_change, change, actor=owner, expected_row_version=1, **fields(owner),
            audit_reason="Stale page")


def test_permissions_and_segregation_of_duties(app, p, owner):
    with pytest.raises(NotPermitted, match="quality.manage"):
        run(cc.create_change, actor=p.operator, document_ids=[], **fields(owner))
    document = new_document(p)
    effective_revision(p, document)
    change = new_change(owner, [document])
    with pytest.raises(NotPermitted, match="Only the owner"):
        signed(cc.submit, change, p.qa)
    signed(cc.submit, change, owner)
    with pytest.raises(NotPermitted, match="quality.approve"):
        signed(cc.approve, change, p.reviewer)
    signed(cc.approve, change, p.qa)
    # the actor starting the drafts authors them: a quality manager without documents.author cannot
    with pytest.raises(NotPermitted, match="documents.author"):
        run(cc.start_implementation, change, actor=p.reviewer, expected_row_version=version(change))
    assert count(Revision) == 1
    # QA never approves a change it owns
    own = new_change(p.qa2, owner_id=p.qa2.id)
    signed(cc.submit, own, p.qa2)
    with pytest.raises(NotPermitted, match="Segregation of duties"):
        signed(cc.approve, own, p.qa2)
    signed(cc.approve, own, p.qa)


def test_cancel_needs_a_signed_reason_from_any_open_state_but_not_after_closing(app, p, owner):
    change = new_change(owner)
    with pytest.raises(ValidationError, match="reason for cancelling"):
        signed(cc.cancel, change, p.qa, reason="")
    signed(cc.cancel, change, p.qa, reason="Superseded by CC for the new mixer.")
    assert change.status == CANCELLED and change.cancelled_reason == "Superseded by CC for the new mixer."
    with pytest.raises(InvalidTransition, match="Cannot cancel"):
        signed(cc.cancel, change, p.qa, reason="Again")
    qa_owned = new_change(owner, owner_id=p.qa.id)
    with pytest.raises(NotPermitted, match="cannot also approve, verify, override or cancel"):
        signed(cc.cancel, qa_owned, p.qa, reason="My own change")
    last = db.session.scalars(sa.select(sig.Signature).order_by(sig.Signature.id.desc())).first()
    assert (last.meaning, last.comment) == (sig.CANCELLED, "Superseded by CC for the new mixer.")
