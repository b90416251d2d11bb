"""The CAPA lifecycle on a real database: plan, signed approval, retraining through the engine (atomically), actions,
effectiveness check, closure gated on open training, cancellation; permissions and bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core.db import db, transaction
from core.errors import InvalidTransition, NotPermitted, ValidationError
from features.support.documents import (
    TODAY,
    count,
    effective_revision,
    hold,
    new_document,
    prove,
    run,
    train,
)
from qms.capa import services
from qms.capa.models import (
    ACTION_APPROVED,
    ACTION_CANCELLED,
    ACTION_DONE,
    ACTION_PLANNED,
    CANCELLED,
    CLOSED,
    CORRECTIVE,
    DRAFT,
    EFFECTIVENESS,
    OPEN,
    PREVENTIVE,
    Capa,
)
from qms.capa.services import ActionInput
from signatures.models import Signature
from tests.integration.stress_helpers import assignment_rows
from training import engine
from training.models import COMPLETED, SOURCE_CAPA_ACTION, TrainingAssignment


def v(capa: Capa) -> int:
    db.session.refresh(capa)
    return capa.row_version


def raise_capa(p, **overrides) -> Capa:
    fields = {"title": "Mixer not cleaned between batches", "source_type": "audit_finding",
              "source_reference": "Internal audit IA-2025-04, finding 3",
              "problem_statement": "Residue found in mixer M-2 after cleaning.",
              "root_cause": "Operators skipped the rinse step; SOP unclear.", "owner_id": p.reviewer.id, **overrides}
    return run(services.create_capa, actor=p.reviewer, **fields)


def add(p, capa: Capa, **overrides):
    fields = {"kind": CORRECTIVE, "description": "Rewrite the rinse step of the SOP", "owner_id": p.reviewer.id,
              "due_on": TODAY + timedelta(days=14), **overrides}
    return run(services.add_action, capa, ActionInput(**fields), actor=p.reviewer, expected_row_version=v(capa))


def approve_plan(p, capa: Capa):
    return run(services.approve_plan, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa))


def approve_retraining(p, action):
    return run(services.approve_retraining_action, action, actor=p.qa, proof=prove(p.qa),
               expected_row_version=v(action.capa))


def assignments(**where) -> list[TrainingAssignment]:
    db.session.expire_all()
    stmt = sa.select(TrainingAssignment).order_by(TrainingAssignment.user_id, TrainingAssignment.cycle)
    for key, value in where.items():
        stmt = stmt.where(getattr(TrainingAssignment, key) == value)
    return list(db.session.scalars(stmt))


@pytest.fixture
def world(p, make_user):
    """An effective SOP; Otto holds OP-MIX and has completed it, Olga holds it with training still open, and Nina
    joined OP-MIX after the release without any training yet."""
    olga = make_user("olga.open", roles={"operator"}, full_name="Olga Open")
    hold([p.operator, olga], p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    train(p.operator, revision)
    nina = make_user("nina.new", roles={"operator"}, full_name="Nina New")
    hold([nina], p.job_function_id)
    return document, revision, olga, nina


def test_capa_lifecycle_from_draft_to_closed_with_retraining(p, world):
    document, revision, olga, nina = world
    capa = raise_capa(p)
    assert capa.number.startswith("CAPA-") and capa.status == DRAFT
    corrective = add(p, capa)
    retraining = add(p, capa, kind=PREVENTIVE, description="Retrain mixing operators on the revised SOP",
                     retraining=True, document_ids=[document.id], job_function_ids=[p.job_function_id])
    approve_plan(p, capa)
    assert capa.status == OPEN and corrective.status == ACTION_APPROVED and retraining.status == ACTION_PLANNED

    result = approve_retraining(p, retraining)
    assert result.created == 2 and [u.username for u, _ in result.already_open] == ["olga.open"]
    created = assignments(source_type=SOURCE_CAPA_ACTION, source_id=retraining.id)
    assert {(a.user_id, a.cycle) for a in created} == {(p.operator.id, 1), (nina.id, 0)}
    assert all(a.item.source_id == revision.id and a.due_on == retraining.due_on and capa.number in a.assigned_reason
               for a in created)
    assert retraining.status == ACTION_APPROVED
    signature = db.session.scalars(sa.select(Signature).where(Signature.record_type == "qms_capa")
                                   .order_by(Signature.id.desc())).first()
    assert signature.meaning == "Approved" and f"Retraining action {retraining.id}" in signature.comment

    # the retraining action is not done while its training is open: the refusal names who on what
    with pytest.raises(InvalidTransition, match=r"Nina New \(nina.new\) on SOP-QA-001 rev 1.0; Otto Operator"):
        run(services.complete_action, retraining, actor=p.reviewer, evidence="All trained")
    train(p.operator, revision)
    train(nina, revision)
    run(services.complete_action, retraining, actor=p.reviewer, evidence="Training records complete")
    with pytest.raises(ValidationError) as error:
        run(services.complete_action, corrective, actor=p.reviewer, evidence="  ")
    assert error.value.field == "evidence"
    run(services.complete_action, corrective, actor=p.reviewer, evidence="SOP-QA-001 rev 2.0 drafted")
    assert {corrective.status, retraining.status} == {ACTION_DONE}

    run(services.start_effectiveness_check, capa, actor=p.reviewer, expected_row_version=v(capa),
        due_on=TODAY + timedelta(days=90))
    assert capa.status == EFFECTIVENESS
    with pytest.raises(InvalidTransition, match="effectiveness check is recorded"):
        run(services.close, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa))
    run(services.record_effectiveness, capa, actor=p.reviewer, proof=prove(p.reviewer),
        expected_row_version=v(capa), result="No residue in 20 inspections", effective=True)
    run(services.close, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa))
    assert capa.status == CLOSED and capa.closed_at is not None
    meanings = [s.meaning for s in services.signatures_of(capa)]
    assert meanings == ["Approved", "Approved", "Verified", "Approved"]


def test_retraining_approval_rolls_back_whole_when_the_engine_fails(p, world, monkeypatch):
    document, _revision, _olga, _nina = world
    capa = raise_capa(p)
    action = add(p, capa, retraining=True, document_ids=[document.id], user_ids=[p.operator.id])
    approve_plan(p, capa)
    signatures_before = count(Signature)
    version_before = v(capa)

    real = engine.create_assignments

    def broken(rows):
        real(rows)  # the rows are written, then the engine fails: nothing may remain
        raise RuntimeError("database went away")

    monkeypatch.setattr(engine, "create_assignments", broken)
    with pytest.raises(RuntimeError):
        approve_retraining(p, action)
    db.session.expire_all()
    assert action.status == ACTION_PLANNED and action.approved_at is None
    assert count(Signature) == signatures_before and v(capa) == version_before
    assert assignments(source_type=SOURCE_CAPA_ACTION) == []

    monkeypatch.undo()
    assert approve_retraining(p, action).created == 1


def test_closure_is_refused_while_training_the_capa_assigned_is_open(p, world):
    document, revision, _olga, nina = world
    capa = raise_capa(p)
    action = add(p, capa, retraining=True, document_ids=[document.id], user_ids=[nina.id])
    approve_plan(p, capa)
    approve_retraining(p, action)
    train(nina, revision)
    run(services.complete_action, action, actor=p.reviewer, evidence="Trained")
    run(services.start_effectiveness_check, capa, actor=p.reviewer, expected_row_version=v(capa),
        due_on=TODAY + timedelta(days=30))
    run(services.record_effectiveness, capa, actor=p.reviewer, proof=prove(p.reviewer),
        expected_row_version=v(capa), result="Effective", effective=True)
    # a further assignment linked to the action (e.g. written by a later retraining run) is still open
    with transaction(reason="Late retraining"):
        engine.create_assignments(assignment_rows(revision, [p.operator.id], cycle=1, source_type=SOURCE_CAPA_ACTION,
                                                  source_id=action.id, due_on=TODAY))
    with pytest.raises(InvalidTransition, match=r"training it assigned is open \(1\): Otto Operator "
                                                r"\(otto.operator\) on SOP-QA-001 rev 1.0"):
        run(services.close, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa))
    assert capa.status == EFFECTIVENESS
    train(p.operator, revision)
    run(services.close, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa))
    assert capa.status == CLOSED


def test_only_quality_roles_raise_approve_and_close(p, world):
    with pytest.raises(NotPermitted, match="quality.manage"):
        run(services.create_capa, actor=p.operator, title="x", source_type="other", source_reference="r",
            problem_statement="p", owner_id=p.operator.id)
    with pytest.raises(ValidationError) as error:
        raise_capa(p, owner_id=p.operator.id)
    assert error.value.field == "owner_id"
    owned = raise_capa(p, owner_id=p.qa.id)
    add(p, owned)
    with pytest.raises(NotPermitted, match="another QA approver"):
        approve_plan(p, owned)
    capa = raise_capa(p)
    add(p, capa)
    with pytest.raises(NotPermitted, match="quality.approve"):
        run(services.approve_plan, capa, actor=p.reviewer, proof=prove(p.reviewer), expected_row_version=v(capa))
    assert capa.status == DRAFT
    approve_plan(p, capa)
    action = capa.actions[0]
    with pytest.raises(NotPermitted, match="action owner"):
        run(services.complete_action, action, actor=p.operator, evidence="done")
    with pytest.raises(NotPermitted):
        run(services.cancel, capa, actor=p.reviewer, proof=prove(p.reviewer), expected_row_version=v(capa),
            reason="Duplicate")
    run(services.cancel, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa), reason="Duplicate of "
        "another CAPA")
    assert capa.status == CANCELLED and capa.cancelled_reason.startswith("Duplicate")
    last = services.signatures_of(capa)[-1]
    assert (last.meaning, last.comment, last.signer_id) == ("Cancelled", "Duplicate of another CAPA", p.qa.id)


def test_qa_cancels_one_action_signing_cancelled_and_its_open_training_is_cancelled(p, world):
    document, revision, olga, nina = world
    capa = raise_capa(p)
    corrective = add(p, capa)
    retraining = add(p, capa, kind=PREVENTIVE, description="Retrain mixing operators", retraining=True,
                     document_ids=[document.id], job_function_ids=[p.job_function_id])
    with pytest.raises(InvalidTransition, match="Cannot cancel an action of"):  # a draft's actions are withdrawn
        run(services.cancel_action, corrective, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa),
            reason="Not needed")
    approve_plan(p, capa)
    approve_retraining(p, retraining)
    train(nina, revision)
    with pytest.raises(NotPermitted, match="quality.approve"):
        run(services.cancel_action, retraining, actor=p.reviewer, proof=prove(p.reviewer),
            expected_row_version=v(capa), reason="Not needed")
    with pytest.raises(ValidationError, match="Reason for cancelling"):
        run(services.cancel_action, retraining, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa),
            reason=" ")
    run(services.cancel_action, retraining, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa),
        reason="SOP withdrawn; the new line has its own training")
    db.session.refresh(retraining)
    assert retraining.status == ACTION_CANCELLED and capa.status == OPEN
    statuses = {a.user_id: a.status for a in assignments(source_type=SOURCE_CAPA_ACTION, source_id=retraining.id)}
    assert statuses == {p.operator.id: "cancelled", nina.id: COMPLETED}  # completed training stays on record
    last = services.signatures_of(capa)[-1]
    assert (last.meaning, last.comment) == ("Cancelled", f"Action {retraining.id} cancelled: SOP withdrawn; the new "
                                                         f"line has its own training")
    with pytest.raises(InvalidTransition, match="only a planned or approved action"):
        run(services.cancel_action, retraining, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa),
            reason="Again")
    # the CAPA goes on without it
    run(services.complete_action, corrective, actor=p.reviewer, evidence="SOP revised")
    run(services.start_effectiveness_check, capa, actor=p.reviewer, expected_row_version=v(capa),
        due_on=TODAY + timedelta(days=30))
    assert capa.status == EFFECTIVENESS


def test_overdue_view_lists_late_actions_and_late_effectiveness_checks(p, world, app):

    early = raise_capa(p, title="Late action")
    add(p, early, due_on=TODAY + timedelta(days=2))
    on_time = raise_capa(p, title="On time")
    add(p, on_time, due_on=TODAY + timedelta(days=20))
    checking = raise_capa(p, title="Effectiveness check")
    done = add(p, checking, due_on=TODAY + timedelta(days=1))
    approve_plan(p, checking)
    run(services.complete_action, done, actor=p.reviewer, evidence="Done")
    run(services.start_effectiveness_check, checking, actor=p.reviewer, expected_row_version=v(checking),
        due_on=TODAY + timedelta(days=5))
    assert set(db.session.scalars(services.overdue_capas(TODAY))) == set()
    assert set(db.session.scalars(services.overdue_capas(TODAY + timedelta(days=3)))) == {early.id}
    assert set(db.session.scalars(services.overdue_capas(TODAY + timedelta(days=6)))) == {early.id, checking.id}
    assert services.next_due([early.id, on_time.id, checking.id]) == {
        early.id: TODAY + timedelta(days=2), on_time.id: TODAY + timedelta(days=20),
        checking.id: TODAY + timedelta(days=5)}
    cancelled = raise_capa(p, title="Cancelled late")
    add(p, cancelled, due_on=TODAY + timedelta(days=1))
    run(services.cancel, cancelled, actor=p.qa, proof=prove(p.qa), expected_row_version=v(cancelled), reason="Dup")
    assert cancelled.id not in set(db.session.scalars(services.overdue_capas(TODAY + timedelta(days=6))))


def test_bad_input_is_refused_with_the_field_and_nothing_is_written(p, world):
    document, _revision, _olga, _nina = world
    cases = [({"source_type": "rumour"}, "source_type"),
             ({"source_type": "deviation", "source_reference": None}, "source_id"),
             ({"source_type": "deviation", "source_id": 9999}, "source_id"),
             ({"source_type": "complaint", "source_reference": " "}, "source_reference"),
             ({"title": ""}, "title"), ({"problem_statement": ""}, "problem_statement"),
             ({"owner_id": None}, "owner_id")]
    for overrides, field in cases:
        with pytest.raises(ValidationError) as error:
            raise_capa(p, **overrides)
        assert error.value.field == field, overrides
    assert count(Capa) == 0

    capa = raise_capa(p, root_cause=None)
    for overrides, field in [({"kind": "punitive"}, "kind"), ({"due_on": TODAY - timedelta(days=1)}, "due_on"),
                             ({"retraining": True, "job_function_ids": [p.job_function_id]}, "document_ids"),
                             ({"retraining": True, "document_ids": [document.id]}, "user_ids"),
                             ({"retraining": True, "document_ids": [document.id], "job_function_ids": [999]},
                              "job_function_ids"),
                             ({"document_ids": [document.id]}, "retraining")]:
        with pytest.raises(ValidationError) as error:
            add(p, capa, **overrides)
        assert error.value.field == field, overrides
    assert capa.actions == []
    run(services.update_capa, capa, actor=p.reviewer, expected_row_version=v(capa), root_cause="Unclear SOP")
    with pytest.raises(InvalidTransition, match="at least one"):
        approve_plan(p, capa)
    assert capa.root_cause == "Unclear SOP"
    run(services.update_capa, capa, actor=p.reviewer, expected_row_version=v(capa), root_cause="")
    add(p, capa)
    with pytest.raises(ValidationError) as error:
        approve_plan(p, capa)
    assert error.value.field == "root_cause" and capa.status == DRAFT

    # stale page: refused
    with pytest.raises(InvalidTransition, match="changed since"):
        run(services.approve_plan, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=v(capa) - 1)


def test_edits_after_approval_need_a_reason(p, world):
    capa = raise_capa(p)
    add(p, capa)
    approve_plan(p, capa)
    with pytest.raises(ValidationError) as error:
        run(services.update_capa, capa, actor=p.reviewer, expected_row_version=v(capa), title="Mixer residue")
    assert error.value.field == "reason"
    run(services.update_capa, capa, actor=p.reviewer, expected_row_version=v(capa), title="Mixer residue",
        audit_reason="Title made precise")
    assert capa.title == "Mixer residue"
    with pytest.raises(InvalidTransition):
        add(p, capa)


def test_completed_assignments_count_as_done(p, world):
    document, revision, _olga, nina = world
    capa = raise_capa(p)
    action = add(p, capa, retraining=True, document_ids=[document.id], user_ids=[nina.id])
    approve_plan(p, capa)
    approve_retraining(p, action)
    train(nina, revision)
    progress = services.progress([action.id])[action.id]
    assert (progress.assigned, progress.completed, progress.open) == (1, 1, 0)
    assert progress.rows[0][4] is not None and progress.rows[0][0].status == COMPLETED
