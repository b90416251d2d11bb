"""Row locks under real concurrency: two people (or a person and the runner) act on one record at the same instant.

`SELECT ... FOR UPDATE` (core.db.lock_row) is what makes the second one wait and then see the first one's commit on
PostgreSQL; SQLite ignores FOR UPDATE and gets the same order from BEGIN IMMEDIATE (one writer at a time). Both
passes run these tests: each database must decide the record once and refuse the other action with a message, never
a server error (a stale row version) or a decision made twice.
The final approval of a revision, read-and-sign, lockout and the release job are raced in
test_concurrency_stress.py and test_documents_concurrency.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import audit, clock
from core.auth.models import User
from core.db import db, transaction
from core.errors import AttestError, InvalidTransition, ValidationError
from features.support.documents import TODAY, effective_revision, hold, new_document, prove, run, train
from qms.capa import services as capas
from qms.capa.models import ACTION_APPROVED, CORRECTIVE, PREVENTIVE, CapaAction
from qms.capa.services import ActionInput
from qms.change_control import services as changes
from qms.change_control.models import APPROVED, DRAFT, TASK_DONE, ChangeControl, ChangeTask
from qms.documents import publish
from qms.documents import services as documents
from qms.documents.models import APPROVED as DOCUMENT_APPROVED
from qms.documents.models import Revision
from signatures import models as sig
from signatures.services import authenticate
from testkit.plugin import PASSWORD
from tests.integration.stress_helpers import (
    assignment_rows,
    at_once,
    audit_verifies,
    race,
    refusals,
    revision_in_force,
)
from training import engine
from training.models import (
    COMPLETED,
    OPEN,
    SOURCE_CAPA_ACTION,
    SOURCE_REVISION_APPROVAL,
    SUPERSEDED,
    TrainingAssignment,
)
from training.read_and_sign import services as read_and_sign
from validation import services as validation
from validation.models import COMPLETED as RUN_COMPLETED
from validation.models import ERROR, PASSED, RUNNING, ScenarioResult, StepResult, ValidationRun


def _history(model: type, record_id: int, column: str = "status") -> list[Any]:
    """The column's value in each audited version of the record, oldest first."""
    versions = version_class(model)
    return list(db.session.scalars(sa.select(getattr(versions, column)).where(versions.id == record_id)
                                   .order_by(versions.transaction_id)))


def _signatures(record_type: str, record_id: int) -> list[str]:
    return list(db.session.scalars(sa.select(sig.Signature.meaning).where(
        sig.Signature.record_type == record_type, sig.Signature.record_id == record_id).order_by(sig.Signature.id)))


# --- a change control: QA approves in one session while another QA rejects it ------------------------------------


def _submitted_change(p) -> ChangeControl:
    owner = p.reviewer  # a supervisor: quality.manage
    change = run(changes.create_change, actor=owner, title="New line clearance checklist",
                 description="Add a signed checklist step.", justification="Line clearance was skipped.",
                 change_type="process", risk_level="low", risk_rationale="No product impact.", owner_id=owner.id)
    db.session.refresh(change)
    run(changes.submit, change, actor=owner, proof=prove(owner), expected_row_version=change.row_version)
    return change


def test_qa_approving_and_rejecting_one_change_control_at_once_decides_it_once(app, p):
    change = _submitted_change(p)
    seen, change_id = change.row_version, change.id
    proofs = [prove(p.qa), prove(p.qa2)]  # each QA approver's ceremony on the page they both opened
    qa_ids = [p.qa.id, p.qa2.id]

    def load(i: int) -> tuple[ChangeControl, User]:
        return db.session.get(ChangeControl, change_id), db.session.get(User, qa_ids[i])

    def decide(i: int, loaded: tuple[ChangeControl, User]) -> str:
        page, actor = loaded
        if i == 0:
            return changes.approve(page, actor=actor, proof=proofs[i], expected_row_version=seen).status
        return changes.reject(page, actor=actor, proof=proofs[i], expected_row_version=seen,
                              comment="Add the risk to batch release.").status

    outcomes = race(app, 2, load, decide)

    [refused] = refusals(outcomes)
    assert isinstance(refused, InvalidTransition), refused
    [decided] = [o for o in outcomes if isinstance(o, str)]
    change = db.session.get(ChangeControl, change_id)
    assert change.status == decided and decided in (APPROVED, DRAFT)
    assert f"it is {'Approved' if decided == APPROVED else 'Draft'}" in refused.message
    decision = sig.APPROVED if decided == APPROVED else sig.REJECTED
    assert _signatures("qms_change_control", change_id) == [sig.AUTHORED, decision], "one decision signed"
    assert _history(ChangeControl, change_id)[-2:] == ["submitted", decided]
    audit_verifies(app)


# --- a change task: its owner and a quality manager mark it done at the same instant ----------------------------------


def test_a_task_marked_done_by_two_people_at_once_is_completed_once(app, p):
    change = _submitted_change(p)
    run(changes.approve, change, actor=p.qa, proof=prove(p.qa), expected_row_version=change.row_version)
    task = run(changes.add_task, change, actor=p.reviewer, title="Print the checklist", owner_id=p.operator.id,
               due_on=TODAY + timedelta(days=3))
    task_id, people = task.id, [p.operator.id, p.reviewer.id]  # the task's owner; the change's quality manager

    def load(i: int) -> tuple[ChangeTask, User]:
        return db.session.get(ChangeTask, task_id), db.session.get(User, people[i])

    def done(i: int, loaded: tuple[ChangeTask, User]) -> str:
        page, actor = loaded
        return changes.set_task_status(page, actor=actor, status=TASK_DONE).status

    outcomes = race(app, 2, load, done)

    [refused] = refusals(outcomes)
    assert isinstance(refused, ValidationError) and refused.message == "The task is already Done.", refused
    assert outcomes.count(TASK_DONE) == 1
    assert _history(ChangeTask, task_id) == ["open", TASK_DONE], "completed once"
    audit_verifies(app)


# --- a CAPA's retraining action: two QA approvers sign it at the same instant -----------------------------------------


def test_two_qa_approvers_approving_one_retraining_action_at_once_assign_its_training_once(app, p, make_user):
    trainees = [p.operator, make_user("olga.op", roles={"operator"}, full_name="Olga Op")]
    hold(trainees, p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    train(p.operator, revision)  # retrained in the next cycle; Olga's first training is still open
    owner = p.reviewer
    capa = run(capas.create_capa, actor=owner, title="Mixer not cleaned", source_type="audit_finding",
               source_reference="IA-2025-04", problem_statement="Residue in mixer M-2.",
               root_cause="The rinse step is unclear.", owner_id=owner.id)

    def add(**fields) -> CapaAction:
        db.session.refresh(capa)
        action = ActionInput(description="Rewrite the rinse step", owner_id=owner.id,
                             due_on=TODAY + timedelta(days=14), **fields)
        return run(capas.add_action, capa, action, actor=owner, expected_row_version=capa.row_version)

    add(kind=CORRECTIVE)
    retraining = add(kind=PREVENTIVE, retraining=True, document_ids=[document.id],
                     job_function_ids=[p.job_function_id])
    db.session.refresh(capa)
    run(capas.approve_plan, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=capa.row_version)
    db.session.refresh(capa)
    seen, action_id, capa_id = capa.row_version, retraining.id, capa.id
    proofs = [prove(p.qa), prove(p.qa2)]
    qa_ids = [p.qa.id, p.qa2.id]

    def load(i: int) -> tuple[CapaAction, User]:
        return db.session.get(CapaAction, action_id), db.session.get(User, qa_ids[i])

    def approve(i: int, loaded: tuple[CapaAction, User]) -> int:
        action, actor = loaded
        return capas.approve_retraining_action(action, actor=actor, proof=proofs[i], expected_row_version=seen).created

    outcomes = race(app, 2, load, approve)

    [refused] = refusals(outcomes)
    # SQLite: the second transaction begins after the first commits and reads the action approved; PostgreSQL: it
    # read the action before the CAPA's lock was granted, and the CAPA's moved row version refuses it
    assert isinstance(refused, InvalidTransition), refused
    assert refused.message.endswith(("is already approved.", "changed since the page was loaded; reload it and check "
                                                             "it again.")), refused
    assert [o for o in outcomes if isinstance(o, int)] == [1], "Otto retrained once; Olga keeps her open training"
    assert db.session.get(CapaAction, action_id).status == ACTION_APPROVED
    assigned = db.session.execute(sa.select(TrainingAssignment.user_id, TrainingAssignment.cycle).where(
        TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.source_id == action_id)).all()
    assert assigned == [(p.operator.id, 1)], "one retraining assignment, not two"
    approvals = [m for m in _signatures("qms_capa", capa_id) if m == sig.APPROVED]
    assert len(approvals) == 2, "the plan's approval and one approval of the retraining action"
    audit_verifies(app)


def test_an_action_completed_by_its_owner_and_a_quality_manager_at_once_is_completed_once(app, p, make_user):
    """The action row is read before the CAPA is locked; once the lock is granted the action must be read again, or
    on PostgreSQL the second person completes an action already done (their evidence replaces the first)."""
    owner, doer = p.reviewer, make_user("cody.capa", roles={"supervisor"}, full_name="Cody Capa")
    capa = run(capas.create_capa, actor=owner, title="Mixer not cleaned", source_type="audit_finding",
               source_reference="IA-2025-04", problem_statement="Residue in mixer M-2.",
               root_cause="The rinse step is unclear.", owner_id=owner.id)
    db.session.refresh(capa)
    action = run(capas.add_action, capa, ActionInput(kind=CORRECTIVE, description="Rewrite the rinse step",
                                                     owner_id=doer.id, due_on=TODAY + timedelta(days=14)),
                 actor=owner, expected_row_version=capa.row_version)
    db.session.refresh(capa)
    run(capas.approve_plan, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=capa.row_version)
    action_id, people = action.id, [doer.id, owner.id]  # the action's owner; the CAPA's owner (quality.manage)

    def load(i: int) -> tuple[CapaAction, User]:
        return db.session.get(CapaAction, action_id), db.session.get(User, people[i])

    def complete(i: int, loaded: tuple[CapaAction, User]) -> str:
        page, actor = loaded
        return capas.complete_action(page, actor=actor, evidence=f"SOP rewritten (recorded by person {i})").evidence

    outcomes = race(app, 2, load, complete)

    [refused] = refusals(outcomes)
    assert isinstance(refused, InvalidTransition) and "only an approved action can be completed" in refused.message
    [evidence] = [o for o in outcomes if isinstance(o, str)]
    assert db.session.get(CapaAction, action_id).evidence == evidence, "the evidence of the one who completed it"
    assert _history(CapaAction, action_id) == ["planned", ACTION_APPROVED, "done"], "completed once"
    audit_verifies(app)


# --- read-and-sign at the instant the revision is superseded (core.bulk's lock on PostgreSQL) -----------------------

TRAINEES = 6


@pytest.mark.parametrize("app_config", [{"TOTP_REQUIRED": "none"}], ids=["password-signing"])
def test_training_signed_at_the_instant_its_revision_is_superseded_is_completed_or_superseded_never_both(app, p,
                                                                                                         make_user):
    """The release supersedes open training in bulk (core.bulk.bulk_update: it selects the open rows, then updates
    them by id). On PostgreSQL the rows are selected FOR UPDATE, so a signature committed meanwhile takes its row out
    of the selection; unlocked, the release would overwrite completed training as superseded. SQLite's writers
    take turns."""
    trainees = [make_user(f"tara.{n}", roles={"operator"}, full_name=f"Tara Trainee {n}") for n in range(TRAINEES)]
    old = revision_in_force(p, "SOP-RL-001")
    with transaction():
        engine.create_assignments(assignment_rows(old, [t.id for t in trainees], source_type=SOURCE_REVISION_APPROVAL))
        now = clock.now_utc()
        new = Revision(document_id=old.document_id, major=2, minor=0, status=DOCUMENT_APPROVED, author_id=p.author.id,
                       content_markdown="# SOP-RL-001\n\nDo it better.\n", change_summary="Better",
                       reason="Improvement", created_at=now, submitted_at=now, approved_at=now,
                       effective_on=now.date())
        new.content_sha256 = new.computed_content_sha256()
        db.session.add(new)
        db.session.flush()
        publish.as_item(new)
    assignments = {a.user_id: a.id for a in db.session.scalars(sa.select(TrainingAssignment))}
    with transaction():
        for t in trainees:
            read_and_sign.mark_opened(db.session.get(TrainingAssignment, assignments[t.id]), t)
    old_id, users = old.id, [t.id for t in trainees]

    def open_sign_page(i: int):
        if i == TRAINEES:
            return None  # the release job
        user, revision = db.session.get(User, users[i]), db.session.get(Revision, old_id)
        token = str(revision.concurrency_token)
        with transaction():
            proof = authenticate(user, password=PASSWORD, totp_code=None)
        return db.session.get(TrainingAssignment, assignments[users[i]]), revision, user, token, proof

    def act(i: int, page) -> Any:
        if page is None:
            return [r.id for r in documents.release_due(clock.now_utc().date())]
        assignment, revision, user, token, proof = page
        return read_and_sign.complete(assignment, user=user, proof=proof, expected_version=token).id

    outcomes = race(app, TRAINEES + 1, open_sign_page, act)

    released = outcomes.pop()
    assert released == [new.id], released
    refusals(outcomes)  # a signature after the release is refused with a message, never a server error
    signed = {users[i] for i, o in enumerate(outcomes) if isinstance(o, int)}
    for user_id, assignment_id in assignments.items():
        assignment = db.session.get(TrainingAssignment, assignment_id)
        expected = COMPLETED if user_id in signed else SUPERSEDED
        assert assignment.status == expected, (user_id, assignment.status)
        assert (assignment.signature_id is not None) == (user_id in signed)
        assert _history(TrainingAssignment, assignment_id) == [OPEN, OPEN, expected], "closed once, one way"
    audit_verifies(app)


# --- a validation run: abandoned by QA at the instant its runner records the results ----------------------------------


def test_a_run_abandoned_while_its_results_are_recorded_ends_in_one_consistent_state(app, make_user):
    vera = make_user("vera.val", roles={"validation_engineer"}, full_name="Vera Validation")
    quinn = make_user("quinn.qa", roles={"qa_approver"}, full_name="Quinn QA")
    with transaction():
        started = clock.now_utc()
        validation_run = ValidationRun(protocol="OQ", status=RUNNING, executor_id=vera.id, created_at=started,
                                       started_at=started)
        db.session.add(validation_run)
        db.session.flush()
        scenario = ScenarioResult(run_id=validation_run.id, position=1, feature_path="oq/login.feature",
                                  feature_name="Login", name="A locked account cannot log in", outcome=PASSED)
        db.session.add(scenario)
        db.session.flush()
        db.session.add(StepResult(run_id=validation_run.id, scenario_id=scenario.id, position=1, keyword="Then",
                                  text="the login is refused", expected="refused", actual="refused", outcome=PASSED))
    run_id, quinn_id = validation_run.id, quinn.id

    def runner_finishes() -> str:
        with audit.acting_as(db.session.get(User, vera.id)):
            return validation._finish(run_id, None, lambda _line: None).status

    def qa_abandons() -> str:
        with transaction():
            page = db.session.get(ValidationRun, run_id)
            return validation.abandon(page, actor=db.session.get(User, quinn_id),
                                      reason="The server restarted during the run").status

    finished, abandoned = at_once(app, runner_finishes, qa_abandons)

    validation_run = db.session.get(ValidationRun, run_id)
    unexpected = [o for o in (finished, abandoned) if isinstance(o, BaseException) and not isinstance(o, AttestError)]
    assert unexpected == [], f"not a clean outcome: {unexpected!r}"
    if isinstance(abandoned, InvalidTransition):  # the results were recorded first: the run stays complete
        assert "only a queued or running run can be abandoned" in abandoned.message
        assert (finished, validation_run.status, validation_run.result) == (RUN_COMPLETED, RUN_COMPLETED, PASSED)
        assert validation_run.error is None and validation_run.passed == 1
    else:  # abandoned first: the late finish leaves the runner error as it is, with the abandonment's reason
        assert abandoned == finished == ERROR
        assert validation_run.status == ERROR
        assert validation_run.error == "Abandoned by Quinn QA: The server restarted during the run"
    assert _history(ValidationRun, run_id) == [RUNNING, validation_run.status], "one transition out of Running"
    audit_verifies(app)
