"""Approving a revision creates its training item and assignments in the same transaction (the promise of Attest)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import bulk, clock
from core.db import db, transaction
from features.support.documents import (
    approve_as,
    approved_revision,
    new_document,
    new_revision,
    review_as,
    route,
    submit,
)
from qms.documents.models import APPROVED, IN_REVIEW, Revision
from qms.documents.publish import item_of
from signatures.models import Signature
from training import engine
from training.models import OPEN, TrainingAssignment, TrainingItem, UserJobFunction


def _hold(users, job_function_id, *, days_ago=30, until=None):
    with transaction():
        for user in users:
            db.session.add(UserJobFunction(user_id=user.id, job_function_id=job_function_id,
                                           valid_from=clock.now_utc().date() - timedelta(days=days_ago),
                                           valid_to=until))


def _assignments(revision_id=None):
    """Every assignment, or those on the training item the revision was published as (by person, then age)."""
    stmt = sa.select(TrainingAssignment).order_by(TrainingAssignment.user_id, TrainingAssignment.id)
    if revision_id is not None:
        stmt = stmt.join(TrainingItem, TrainingItem.id == TrainingAssignment.item_id).where(
            TrainingItem.source_id == revision_id)
    return list(db.session.scalars(stmt))


def test_final_approval_assigns_the_exact_revision_to_every_audience_member_due_on_the_effective_date(app, p,
                                                                                                  make_user):
    operators = [make_user(f"op{i}", roles={"operator"}) for i in range(5)]
    _hold(operators, p.job_function_id)
    revision = approved_revision(p, new_document(p), effective_on=clock.now_utc().date() + timedelta(days=10))
    rows = _assignments(revision.id)
    assert [a.user_id for a in rows] == [u.id for u in operators]
    assert {(a.status, a.due_on, a.source_type, a.source_id) for a in rows} == {
        (OPEN, revision.effective_on, "revision_approval", revision.id)}
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0
    vcls = version_class(TrainingAssignment)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(vcls)) == 5  # each assignment is audited


def test_no_assignment_before_the_last_approver_signs(app, p, make_user):
    operator = make_user("op.one", roles={"operator"})
    _hold([operator], p.job_function_id)
    revision = new_revision(p, new_document(p))
    route(p, revision, approvers=[p.qa, p.qa2])
    submit(p, revision)
    review_as(p.reviewer, revision)
    approve_as(p.qa, revision)
    assert _assignments() == []
    approve_as(p.qa2, revision)
    assert [a.user_id for a in _assignments(revision.id)] == [operator.id]


def test_when_assignment_creation_fails_the_approval_rolls_back_with_it(app, p, make_user, monkeypatch):
    operator = make_user("op.two", roles={"operator"})
    _hold([operator], p.job_function_id)
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    review_as(p.reviewer, revision)
    signatures_before = db.session.scalar(sa.select(sa.func.count()).select_from(Signature))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while writing assignments")

    monkeypatch.setattr(bulk, "bulk_insert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        approve_as(p.qa, revision)
    db.session.expire_all()
    assert db.session.get(Revision, revision.id).status == IN_REVIEW
    assert db.session.get(Revision, revision.id).approved_at is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == signatures_before
    assert _assignments() == []
    monkeypatch.undo()
    approve_as(p.qa, revision)
    assert db.session.get(Revision, revision.id).status == APPROVED
    assert len(_assignments(revision.id)) == 1


def test_assigning_again_creates_nothing(app, p, make_user):
    operators = [make_user(f"op{i}", roles={"operator"}) for i in range(3)]
    _hold(operators, p.job_function_id)
    revision = approved_revision(p, new_document(p))
    with transaction():
        created = engine.assign_for_item(item_of(revision), due_on=revision.effective_on)
    assert created == 0
    assert len(_assignments(revision.id)) == 3


def test_each_revision_gets_its_own_assignments(app, p, make_user):
    operator = make_user("op.three", roles={"operator"})
    _hold([operator], p.job_function_id)
    document = new_document(p)
    first = approved_revision(p, document, effective_on=clock.now_utc().date())
    from features.support.documents import run
    from qms.documents import services

    run(services.release_due, clock.now_utc().date())
    second = approved_revision(p, document)
    rows = _assignments()
    assert [(a.user_id, a.item.source_id) for a in rows] == [(operator.id, first.id), (operator.id, second.id)]


def test_inactive_users_and_job_functions_not_held_today_are_not_assigned(app, p, make_user):
    current, former, future, deactivated = (make_user(n, roles={"operator"}) for n in ("cur", "former", "future",
                                                                                       "gone"))
    today = clock.now_utc().date()
    _hold([current, deactivated], p.job_function_id)
    _hold([former], p.job_function_id, days_ago=60, until=today - timedelta(days=1))
    _hold([future], p.job_function_id, days_ago=-5)
    from training.people import services as people

    with transaction(reason="Left the company"):
        people.deactivate_person(deactivated, actor=None)
    revision = approved_revision(p, new_document(p))
    assert [a.user_id for a in _assignments(revision.id)] == [current.id]


def test_the_database_refuses_a_second_assignment_of_the_same_revision_to_the_same_person(app, p, make_user):
    operator = make_user("op.four", roles={"operator"})
    _hold([operator], p.job_function_id)
    revision = approved_revision(p, new_document(p))
    with pytest.raises(sa.exc.IntegrityError), transaction():
        item = item_of(revision)
        bulk.bulk_insert(TrainingAssignment, [{"user_id": operator.id, "subject_id": item.subject_id,
                                               "item_id": item.id, "status": OPEN,
                                               "source_type": "revision_approval", "source_id": revision.id,
                                               "due_on": None, "assigned_at": clock.now_utc()}])
    assert len(_assignments(revision.id)) == 1


def _release(on):
    from features.support.documents import run
    from qms.documents import services

    run(services.release_due, on)


def test_open_training_on_a_superseded_revision_is_closed_and_completed_training_is_kept(app, p, make_user):
    done, pending = make_user("done.op", roles={"operator"}), make_user("pending.op", roles={"operator"})
    _hold([done, pending], p.job_function_id)
    document = new_document(p)
    today = clock.now_utc().date()
    first = approved_revision(p, document, effective_on=today)
    _release(today)
    with transaction(reason="Completed on paper during the system outage"):
        row = db.session.scalars(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == done.id)).one()
        row.status, row.completed_at = "completed", clock.now_utc()
    second = approved_revision(p, document, effective_on=today)
    _release(today)
    by_user = {(a.user_id, a.item.source_id): a for a in _assignments()}
    assert by_user[(done.id, first.id)].status == "completed"
    assert by_user[(pending.id, first.id)].status == "superseded"
    assert by_user[(pending.id, first.id)].closed_reason == f"Superseded by revision {second.label}"
    assert by_user[(pending.id, second.id)].status == OPEN and by_user[(done.id, second.id)].status == OPEN
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_policy_keep_leaves_open_training_on_the_superseded_revision(app, p, make_user):
    app.config["ATTEST_TRAINING_SUPERSEDED_POLICY"] = "keep"
    operator = make_user("keep.op", roles={"operator"})
    _hold([operator], p.job_function_id)
    document = new_document(p)
    today = clock.now_utc().date()
    first = approved_revision(p, document, effective_on=today)
    _release(today)
    approved_revision(p, document, effective_on=today)
    _release(today)
    statuses = {a.item.source_id: a.status for a in _assignments()}
    assert statuses[first.id] == OPEN


# --- people joining and leaving job functions -------------------------------------------------------------------------


def test_a_new_holder_of_a_job_function_is_assigned_the_current_revision(app, p, make_user):
    from training.people import services as training_services

    document = new_document(p)
    today = clock.now_utc().date()
    effective = approved_revision(p, document, effective_on=today)
    _release(today)
    coordinator = make_user("coord", roles={"training_coordinator"})
    newcomer = make_user("new.hire", roles={"operator"})
    with transaction():
        training_services.grant_job_function(newcomer, p.job_function_id, actor=coordinator)
    rows = _assignments()
    assert [(a.user_id, a.item.source_id, a.status, a.source_type) for a in rows] == [
        (newcomer.id, effective.id, OPEN, "job_function")]
    assert rows[0].due_on == today + timedelta(days=document.training_window_days)
    with pytest.raises(Exception, match="already holds"), transaction():
        training_services.grant_job_function(newcomer, p.job_function_id, actor=coordinator)
    assert len(_assignments()) == 1


def test_ending_a_job_function_cancels_open_training_it_required_with_the_reason(app, p, make_user):
    from training.people import services as training_services

    operator = make_user("leaving.op", roles={"operator"})
    _hold([operator], p.job_function_id)
    revision = approved_revision(p, new_document(p))
    held = db.session.scalars(sa.select(UserJobFunction).where(UserJobFunction.user_id == operator.id)).one()
    with transaction():
        training_services.end_job_function(held, actor=None)
    row = _assignments(revision.id)[0]
    assert row.status == "cancelled"
    assert row.closed_reason.startswith("Job function OP-MIX ended")


def test_only_a_training_coordinator_assigns_job_functions(app, p, make_user):
    from core.errors import NotPermitted
    from training.people import services as training_services

    operator = make_user("op.self", roles={"operator"})
    with pytest.raises(NotPermitted), transaction():
        training_services.grant_job_function(operator, p.job_function_id, actor=operator)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(UserJobFunction)) == 0


def test_deactivating_a_person_cancels_their_open_training_and_keeps_the_history(app, p, make_user):
    from training.people import services as people

    operator = make_user("quitter", roles={"operator"})
    _hold([operator], p.job_function_id)
    revision = approved_revision(p, new_document(p))
    with transaction(reason="Left the company"):
        people.deactivate_person(operator, actor=None)
    row = _assignments(revision.id)[0]
    assert (row.status, row.closed_reason) == ("cancelled", "Account deactivated")
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_job_functions_are_granted_and_ended_from_the_command_line(app, p, make_user):
    operator = make_user("cli.op", roles={"operator"})
    revision = approved_revision(p, new_document(p))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["training", "grant-job-function", "cli.op", "OP-MIX"])
    assert result.exit_code == 0, result.output
    assert [(a.user_id, a.item.source_id, a.status) for a in _assignments()] == [(operator.id, revision.id, OPEN)]
    assert runner.invoke(args=["training", "grant-job-function", "cli.op", "NOPE"]).exit_code != 0
    result = runner.invoke(args=["training", "end-job-function", "cli.op", "OP-MIX"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert _assignments()[0].status == "cancelled"


def test_job_function_changes_dated_ahead_take_effect_with_the_daily_reconciliation(app, p, make_user):
    from training.people import services as training_services

    document = new_document(p)
    today = clock.now_utc().date()
    revision = approved_revision(p, document, effective_on=today)
    _release(today)
    coordinator = make_user("coord", roles={"training_coordinator"})
    mover = make_user("mover", roles={"operator"})
    with transaction():
        change = training_services.grant_job_function(mover, p.job_function_id, valid_from=today + timedelta(days=3),
                                                      actor=coordinator)
    assert change.created == 0 and _assignments(revision.id) == []
    cli = app.test_cli_runner()
    clock.freeze(clock.now_utc() + timedelta(days=3))
    result = cli.invoke(args=["training", "reconcile-due"])
    assert result.exit_code == 0
    assert result.output.splitlines() == ["reconciled 1 people: 1 assignments created, 0 cancelled",
                                          "applied 0 dated requirements: 0 assignments created, 0 cancelled"]
    assert [(a.user_id, a.status) for a in _assignments(revision.id)] == [(mover.id, OPEN)]
    assert cli.invoke(args=["training", "reconcile-due"]).output.splitlines()[0].endswith(
        "0 assignments created, 0 cancelled")
    held = db.session.scalars(sa.select(UserJobFunction).where(UserJobFunction.user_id == mover.id)).one()
    with transaction():
        training_services.end_job_function(held, valid_to=clock.now_utc().date() + timedelta(days=2), actor=None)
    clock.freeze(clock.now_utc() + timedelta(days=2))
    result = cli.invoke(args=["training", "reconcile-due"])
    assert result.output.splitlines()[0] == "reconciled 1 people: 0 assignments created, 1 cancelled"
    assert _assignments(revision.id)[0].status == "cancelled"


def test_a_person_who_regains_a_job_function_or_is_reactivated_is_assigned_again(app, p, make_user, coordinator):
    from training.people import services as training_services

    document = new_document(p)
    today = clock.now_utc().date()
    revision = approved_revision(p, document, effective_on=today)
    _release(today)
    person = make_user("back.again", roles={"operator"})
    with transaction():
        change = training_services.grant_job_function(person, p.job_function_id, actor=coordinator)
    assert change.created == 1
    held = db.session.get(UserJobFunction, change.held.id)
    with transaction(reason="Moved to packaging for a month"):
        training_services.end_job_function(held, actor=coordinator)
    clock.freeze(clock.now_utc() + timedelta(days=30))
    with transaction():
        change = training_services.grant_job_function(person, p.job_function_id, actor=coordinator)
    assert change.created == 1
    rows = _assignments(revision.id)
    assert [(a.cycle, a.status) for a in rows] == [(0, "cancelled"), (1, OPEN)]

    admin = make_user("ada.admin", roles={"system_admin"})
    with transaction(reason="Left"):
        training_services.deactivate_person(person, actor=admin)
    with transaction(reason="Rehired"):
        training_services.reactivate_person(person)
    rows = _assignments(revision.id)
    assert [(a.cycle, a.status) for a in rows] == [(0, "cancelled"), (1, "cancelled"), (2, OPEN)]


def test_major_only_training_that_still_counts_is_not_assigned_again(app, p, make_user, coordinator):
    from features.support.documents import effective_revision, train
    from qms.documents.publish import subject_of
    from training.matrix import services as matrix
    from training.models import RETRAIN_MAJOR
    from training.people import services as training_services

    document = new_document(p)
    operator = make_user("major.op", roles={"operator"})
    _hold([operator], p.job_function_id)
    first = effective_revision(p, document)
    train(operator, first)
    with transaction(reason="Minor changes need no retraining"):
        matrix.set_requirement(subject_of(document), p.job_function_id, retrain=RETRAIN_MAJOR, actor=coordinator)
    minor = effective_revision(p, document, major=False)
    with transaction():  # an unrelated change for the person: reconciling must not assign 1.1
        from core.org import JobFunction

        other = JobFunction(code="OP-OTHER", name="Other", department_id=p.department_id)
        db.session.add(other)
    with transaction():
        assert training_services.grant_job_function(operator, other.id, actor=coordinator).created == 0
    assert _assignments(minor.id) == []
    # tightening the requirement to every revision assigns 1.1 at once
    with transaction(reason="Every change now matters"):
        _row, assigned = matrix.set_requirement(subject_of(document), p.job_function_id, retrain="every",
                                                actor=coordinator)
    assert assigned == 1 and [a.user_id for a in _assignments(minor.id)] == [operator.id]
