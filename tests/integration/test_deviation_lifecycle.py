"""Deviations: reporting with validation, the signed lifecycle to QA closure, permissions, the audit trail, and the
point-in-time training adequacy panel."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit.views import record_history
from core.db import db, transaction
from core.errors import InvalidTransition, NotPermitted, ValidationError
from core.org import Department, Site
from features.support.documents import (
    count,
    effective_revision,
    hold,
    new_document,
    prove,
    run,
    train,
    version,
)
from qms.capa.models import Capa
from qms.deviations import services
from qms.deviations.models import CANCELLED, CLOSED, INVESTIGATION, OPEN, PENDING_APPROVAL, Deviation
from signatures import models as sig


def report(p, actor=None, **overrides):
    site_id = db.session.scalar(sa.select(Department.site_id).where(Department.id == p.department_id))
    now = clock.now_utc()
    fields = {"title": "Mixer cleaned with the wrong detergent", "occurred_at": now - timedelta(hours=3),
              "discovered_at": now - timedelta(hours=1), "site_id": site_id, "department_id": p.department_id,
              "area": "Mixer M-12", "description": "Detergent B was used instead of A.",
              "immediate_actions": "Batch quarantined.", **overrides}
    return run(services.report_deviation, actor=actor or p.reviewer, **fields)


def ready_for_submission(p, deviation):
    run(services.start_investigation, deviation, actor=p.reviewer)
    run(services.classify, deviation, actor=p.reviewer, classification="major",
        justification="Product quality possibly affected.", reason="Classified after first assessment")
    return run(services.record_investigation, deviation, actor=p.reviewer, investigation="Interviewed the operator.",
               root_cause="The SOP did not name the detergent.", root_cause_category="procedure",
               reason="Investigation complete")


def signatures_of(deviation):
    return list(db.session.scalars(sa.select(sig.Signature).where(
        sig.Signature.record_type == "qms_deviation", sig.Signature.record_id == deviation.id)
        .order_by(sig.Signature.id)))


def test_deviation_goes_from_report_to_qa_closure_with_signatures(p):
    deviation = report(p)
    assert deviation.number == f"DEV-{clock.now_utc().year}-0001" and deviation.status == OPEN
    assert deviation.owner_id == p.reviewer.id
    assert report(p, title="Second").number == f"DEV-{clock.now_utc().year}-0002"

    ready_for_submission(p, deviation)
    assert deviation.status == INVESTIGATION
    run(services.submit_for_approval, deviation, actor=p.reviewer, proof=prove(p.reviewer),
        expected_row_version=version(deviation))
    assert deviation.status == PENDING_APPROVAL

    # QA rejects with a comment: back to investigation
    run(services.reject, deviation, actor=p.qa, proof=prove(p.qa), expected_row_version=version(deviation),
        comment="Check the other shifts too.")
    assert deviation.status == INVESTIGATION
    run(services.record_investigation, deviation, actor=p.reviewer, investigation="All shifts interviewed.",
        root_cause="The SOP did not name the detergent.", root_cause_category="procedure", reason="QA comment")
    run(services.submit_for_approval, deviation, actor=p.reviewer, proof=prove(p.reviewer),
        expected_row_version=version(deviation))
    run(services.approve_closure, deviation, actor=p.qa, proof=prove(p.qa), expected_row_version=version(deviation))
    assert deviation.status == CLOSED and deviation.closed_at == clock.now_utc()
    meanings = [(s.meaning, s.signer_id) for s in signatures_of(deviation)]
    assert meanings == [(sig.AUTHORED, p.reviewer.id), (sig.REJECTED, p.qa.id), (sig.AUTHORED, p.reviewer.id),
                        (sig.APPROVED, p.qa.id)]
    assert signatures_of(deviation)[1].comment == "Check the other shifts too."

    # a closed deviation is locked
    with pytest.raises(InvalidTransition):
        run(services.classify, deviation, actor=p.reviewer, classification="minor", justification="x", reason="y")


def test_submission_needs_classification_root_cause_and_category(p):
    deviation = report(p)
    run(services.start_investigation, deviation, actor=p.reviewer)
    with pytest.raises(InvalidTransition, match="classification, root cause, root cause category"):
        run(services.submit_for_approval, deviation, actor=p.reviewer, proof=prove(p.reviewer),
            expected_row_version=version(deviation))
    db.session.refresh(deviation)
    assert deviation.status == INVESTIGATION and signatures_of(deviation) == []


def test_only_the_owner_submits_and_the_owner_cannot_approve(p, make_user):
    qa_owner = make_user("olga.qa", roles={"qa_approver"}, full_name="Olga QA")
    deviation = report(p, actor=qa_owner)
    ready_for_submission(p, deviation)
    with pytest.raises(NotPermitted, match="Only the owner"):
        run(services.submit_for_approval, deviation, actor=p.reviewer, proof=prove(p.reviewer),
            expected_row_version=version(deviation))
    run(services.submit_for_approval, deviation, actor=qa_owner, proof=prove(qa_owner),
        expected_row_version=version(deviation))
    with pytest.raises(NotPermitted, match="cannot also approve"):
        run(services.approve_closure, deviation, actor=qa_owner, proof=prove(qa_owner),
            expected_row_version=version(deviation))
    # a supervisor manages quality records but cannot approve
    with pytest.raises(NotPermitted, match="quality.approve"):
        run(services.approve_closure, deviation, actor=p.reviewer, proof=prove(p.reviewer),
            expected_row_version=version(deviation))
    db.session.refresh(deviation)
    assert deviation.status == PENDING_APPROVAL


def test_people_without_quality_manage_cannot_report_or_edit(p):
    with pytest.raises(NotPermitted, match="quality.manage"):
        report(p, actor=p.operator)
    deviation = report(p)
    with pytest.raises(NotPermitted):
        run(services.classify, deviation, actor=p.operator, classification="minor", justification="Small.")
    assert count(Deviation) == 1


def test_reject_needs_a_comment_and_a_stale_page_is_refused(p):
    deviation = report(p)
    ready_for_submission(p, deviation)
    run(services.submit_for_approval, deviation, actor=p.reviewer, proof=prove(p.reviewer),
        expected_row_version=version(deviation))
    with pytest.raises(ValidationError) as refused:
        run(services.reject, deviation, actor=p.qa, proof=prove(p.qa), expected_row_version=version(deviation),
            comment="  ")
    assert refused.value.field == "comment"
    with pytest.raises(InvalidTransition, match="changed since"):
        run(services.approve_closure, deviation, actor=p.qa, proof=prove(p.qa),
            expected_row_version=version(deviation) - 1)
    db.session.refresh(deviation)
    assert deviation.status == PENDING_APPROVAL and len(signatures_of(deviation)) == 1


@pytest.mark.parametrize(("overrides", "field"), [
    ({"title": " "}, "title"),
    ({"occurred_at": None}, "occurred_at"),
    ({"description": ""}, "description"),
    ({"site_id": 999_999}, "site_id"),
    ({"department_id": 999_999}, "department_id"),
])
def test_bad_report_is_refused_with_the_field_and_nothing_written(p, overrides, field):
    with pytest.raises(ValidationError) as refused:
        report(p, **overrides)
    assert refused.value.field == field
    assert count(Deviation) == 0


def test_dates_must_be_in_order_and_not_in_the_future(p):
    now = clock.now_utc()
    with pytest.raises(ValidationError, match="before the deviation occurred") as refused:
        report(p, occurred_at=now - timedelta(hours=1), discovered_at=now - timedelta(hours=2))
    assert refused.value.field == "discovered_at"
    with pytest.raises(ValidationError, match="future"):
        report(p, occurred_at=now - timedelta(hours=1), discovered_at=now + timedelta(hours=1))
    assert count(Deviation) == 0
    # no number was consumed by the refusals
    assert report(p).number.endswith("-0001")


def test_department_must_belong_to_the_site(p):
    with transaction():
        other = Site(code="OTHER", name="Other site")
        db.session.add(other)
        db.session.flush()
        other_id = other.id
    with pytest.raises(ValidationError, match="not part of site OTHER") as refused:
        report(p, site_id=other_id)
    assert refused.value.field == "department_id"


def test_edits_after_open_need_a_reason_and_are_audited(p):
    deviation = report(p)
    run(services.update_deviation, deviation, actor=p.reviewer, expected_row_version=version(deviation),
        title="Mixer cleaned with detergent B", occurred_at=deviation.occurred_at,
        discovered_at=deviation.discovered_at, site_id=deviation.site_id, department_id=deviation.department_id,
        description=deviation.description)
    run(services.start_investigation, deviation, actor=p.reviewer)
    with pytest.raises(ValidationError) as refused:
        run(services.classify, deviation, actor=p.reviewer, classification="minor", justification="No impact.")
    assert refused.value.field == "reason"
    with pytest.raises(ValidationError) as refused:
        run(services.classify, deviation, actor=p.reviewer, classification="severe", justification="x", reason="y")
    assert refused.value.field == "classification"
    db.session.refresh(deviation)
    assert deviation.classification is None
    run(services.classify, deviation, actor=p.reviewer, classification="minor", justification="No impact.",
        reason="Batch tested within specification")
    history = record_history(Deviation, deviation.id)
    assert any(e.tx.reason == "Batch tested within specification" for e in history)
    assert any(e.tx.reason == "Investigation started" for e in history)


def test_people_documents_and_capa_links(p):
    document = new_document(p)
    deviation = report(p, person_ids=[p.operator.id], document_ids=[document.id])
    assert [u.id for u in services.involved(deviation)] == [p.operator.id]
    run(services.set_people, deviation, actor=p.reviewer, user_ids=[p.operator.id, p.author.id])
    assert {u.id for u in services.involved(deviation)} == {p.operator.id, p.author.id}
    run(services.set_documents, deviation, actor=p.reviewer, document_ids=[])
    assert services.linked_documents(deviation) == []
    with pytest.raises(ValidationError) as refused:
        run(services.set_documents, deviation, actor=p.reviewer, document_ids=[999_999])
    assert refused.value.field == "document_ids"

    with pytest.raises(ValidationError, match="no CAPA numbered CAPA-2025-0042"):
        run(services.link_capa, deviation, actor=p.reviewer, capa_number="CAPA-2025-0042")
    with transaction():
        capa = Capa(number="CAPA-2025-0042", title="Detergent labelling", source_type="deviation",
                    source_id=deviation.id, problem_statement="Wrong detergent used.", owner_id=p.reviewer.id)
        db.session.add(capa)
    run(services.link_capa, deviation, actor=p.reviewer, capa_number="capa-2025-0042")
    assert deviation.capa_id == capa.id


def test_cancel_needs_a_reason(p):
    deviation = report(p)
    with pytest.raises(ValidationError):
        run(services.cancel, deviation, actor=p.reviewer, reason="")
    run(services.cancel, deviation, actor=p.reviewer, reason="Duplicate of DEV-2025-0007")
    assert deviation.status == CANCELLED and deviation.cancelled_reason == "Duplicate of DEV-2025-0007"
    assert record_history(Deviation, deviation.id)[-1].tx.reason == "Cancelled: Duplicate of DEV-2025-0007"
    with pytest.raises(InvalidTransition):
        run(services.cancel, deviation, actor=p.reviewer, reason="again")


def trained_after_the_deviation(p):
    """The operator trained on revision 1; revision 2 became effective; the deviation occurred (returned, to the
    minute) under revision 2; four hours later the operator signed revision 2; the clock is now a day later.
    Returns (document, rev1, rev2, occurred, the revision 2 assignment)."""
    hold([p.operator], p.job_function_id)
    document = new_document(p)
    rev1 = effective_revision(p, document)
    train(p.operator, rev1)
    clock.freeze(clock.now_utc() + timedelta(days=10))
    rev2 = effective_revision(p, document, content="# Purpose\n\nClean it with detergent A.\n")
    clock.freeze(clock.now_utc() + timedelta(days=2))
    occurred = clock.now_utc().replace(second=0, microsecond=0)
    clock.freeze(occurred + timedelta(hours=4))
    trained = train(p.operator, rev2)
    clock.freeze(occurred + timedelta(days=1))
    return document, rev1, rev2, occurred, trained


def test_adequacy_panel_shows_a_person_trained_after_the_deviation_as_not_trained_then(p):
    """Revision 2 was in force when the deviation occurred; the operator signed it only afterwards: at the time of
    the deviation they were trained on revision 1 only, today they are qualified on revision 2."""
    document, rev1, rev2, occurred, trained = trained_after_the_deviation(p)
    deviation = report(p, occurred_at=occurred, discovered_at=occurred + timedelta(hours=1),
                       person_ids=[p.operator.id], document_ids=[document.id])

    [line] = services.training_adequacy(deviation)
    assert line.user.id == p.operator.id and line.document.id == document.id
    assert line.then.required.id == rev2.id
    assert line.then.qualified is False
    assert line.then.trained.id == rev1.id  # the newest completion by then
    assert "not on revision 2.0" in line.then.reason
    assert line.now.qualified is True and line.now.trained.id == rev2.id
    db.session.refresh(trained)
    assert line.now.completed_at == trained.completed_at > occurred


def test_adequacy_panel_shows_training_completed_before_the_deviation(p):
    hold([p.operator], p.job_function_id)
    document = new_document(p)
    rev1 = effective_revision(p, document)
    train(p.operator, rev1)
    trained_at = clock.now_utc()
    clock.freeze(trained_at + timedelta(days=3))
    deviation = report(p, person_ids=[p.operator.id, p.author.id], document_ids=[document.id])
    lines = {line.user.id: line for line in services.training_adequacy(deviation)}
    assert lines[p.operator.id].then.qualified is True
    assert lines[p.operator.id].then.completed_at == trained_at
    assert lines[p.author.id].then.qualified is False and lines[p.author.id].then.trained is None
