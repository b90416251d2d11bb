"""The training matrix (requirements job function -> subject) and the release policy "effective when trained"."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from core.errors import InvalidTransition, NotPermitted, ValidationError
from core.org import JobFunction
from features.support.documents import (
    approved_revision,
    effective_revision,
    hold,
    new_document,
    prove,
    run,
    signatures_of,
    train,
    version,
)
from qms.documents import release, services
from qms.documents.models import APPROVED, EFFECTIVE, RELEASE_WHEN_TRAINED
from qms.documents.publish import item_of, subject_of
from signatures.models import APPROVED_DESPITE_TRAINING
from training.matrix import services as matrix
from training.models import CANCELLED, COMPLETED, OPEN, TrainingAssignment, TrainingRequirement


def _second_function(p):
    with transaction():
        jf = JobFunction(code="OP-PACK", name="Packaging operator", department_id=p.department_id)
        db.session.add(jf)
    return jf


def _rows(**where):
    stmt = sa.select(TrainingAssignment).order_by(TrainingAssignment.user_id, TrainingAssignment.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(TrainingAssignment, key) == value)
    return list(db.session.scalars(stmt))


def test_adding_a_requirement_assigns_the_current_revision_to_every_holder_at_once(app, p, coordinator, make_user):
    packer = _second_function(p)
    people = [make_user(f"packer{i}", roles={"operator"}) for i in range(3)]
    hold(people, packer.id)
    document = new_document(p)
    revision = effective_revision(p, document)
    requirement, assigned = run(matrix.set_requirement, subject_of(document), packer.id, days_allowed=5,
                                actor=coordinator)
    assert assigned == 3
    rows = _rows(item_id=item_of(revision).id)
    assert {(a.user_id, a.status, a.source_type, a.source_id, a.due_on) for a in rows} == {
        (u.id, OPEN, "matrix", requirement.id, clock.now_utc().date() + timedelta(days=5)) for u in people}
    assert rows[0].assigned_reason == "SOP-QA-001 required for job function OP-PACK"
    with pytest.raises(ValidationError, match="Nothing changed"), transaction(reason="again"):
        matrix.set_requirement(subject_of(document), packer.id, days_allowed=5, actor=coordinator)
    assert len(_rows(item_id=item_of(revision).id)) == 3  # idempotent


def test_changing_a_requirement_needs_a_reason_and_is_audited(app, p, coordinator):
    from sqlalchemy_continuum import version_class

    document = new_document(p)
    with pytest.raises(ValidationError), transaction():
        matrix.set_requirement(subject_of(document), p.job_function_id, recurrence_months=12, actor=coordinator)
    run(matrix.set_requirement, subject_of(document), p.job_function_id, recurrence_months=12, actor=coordinator,
        audit_reason="Annual retraining required by SOP-QA-010")
    vcls = version_class(TrainingRequirement)
    versions = db.session.scalars(sa.select(vcls).order_by(vcls.transaction_id)).all()
    assert [v.recurrence_months for v in versions] == [None, 12]


def test_only_a_training_coordinator_edits_the_matrix(app, p):
    document = new_document(p)
    with pytest.raises(NotPermitted), transaction():
        matrix.set_requirement(subject_of(document), p.job_function_id, recurrence_months=6, actor=p.operator)


def test_bad_values_are_refused_naming_the_field(app, p, coordinator):
    document = new_document(p)
    for kwargs, field in [({"retrain": "sometimes"}, "retrain"), ({"recurrence_months": 0}, "recurrence_months"),
                          ({"days_allowed": 400}, "days_allowed")]:
        with pytest.raises(ValidationError) as caught, transaction(reason="x"):
            matrix.set_requirement(subject_of(document), p.job_function_id, actor=coordinator, **kwargs)
        assert caught.value.field == field


def test_removing_a_requirement_cancels_open_matrix_training_but_keeps_manual_and_completed(app, p, coordinator,
                                                                                        make_user):
    trained, pending = make_user("trained.op", roles={"operator"}), make_user("pending.op", roles={"operator"})
    hold([trained, pending], p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    train(trained, revision)
    requirement = matrix.requirement(subject_of(document), p.job_function_id)
    run(matrix.remove_requirement, requirement, actor=coordinator, audit_reason="Mixers no longer use this SOP")
    by_user = {a.user_id: a for a in _rows(item_id=item_of(revision).id)}
    assert by_user[trained.id].status == COMPLETED
    assert by_user[pending.id].status == CANCELLED
    assert by_user[pending.id].closed_reason == "SOP-QA-001 no longer required for OP-MIX (training matrix changed)"


def test_when_trained_release_is_held_until_everyone_has_trained(app, p, make_user):
    a, b = make_user("a.op", roles={"operator"}), make_user("b.op", roles={"operator"})
    hold([a, b], p.job_function_id)
    document = new_document(p)
    run(services.update_document_metadata, document, actor=p.qa, release_policy=RELEASE_WHEN_TRAINED,
        audit_reason="Critical procedure: nobody works under it untrained")
    today = clock.now_utc().date()
    revision = approved_revision(p, document, effective_on=today)
    assert run(services.release_due, today) == []
    assert release.held_releases(today) == [revision]
    train(a, revision)
    assert run(services.release_due, today) == []
    train(b, revision)
    assert run(services.release_due, today) == [revision]
    assert revision.status == EFFECTIVE


def test_qa_override_releases_a_held_revision_naming_the_people_not_trained(app, p, make_user):
    a, b = (make_user("a.op", roles={"operator"}, full_name="Anna Early"),
            make_user("b.op", roles={"operator"}, full_name="Bert Late"))
    hold([a, b], p.job_function_id)
    document = new_document(p)
    run(services.update_document_metadata, document, actor=p.qa, release_policy=RELEASE_WHEN_TRAINED,
        audit_reason="Critical procedure")
    revision = approved_revision(p, document, effective_on=clock.now_utc().date())
    train(a, revision)
    author_proof, row_version = prove(p.author), version(revision)
    with pytest.raises(NotPermitted), transaction():
        release.override_release(revision, actor=p.author, proof=author_proof, expected_row_version=row_version,
                                 justification="Production need")
    proof, row_version = prove(p.qa), version(revision)
    with pytest.raises(ValidationError), transaction():
        release.override_release(revision, actor=p.qa, proof=proof, expected_row_version=row_version,
                                 justification=" ")
    assert revision.status == APPROVED
    run(release.override_release, revision, actor=p.qa, proof=prove(p.qa), expected_row_version=version(revision),
        justification="Bert is on leave; he trains before his next shift")
    db.session.refresh(revision)
    assert revision.status == EFFECTIVE
    assert revision.release_override_note.endswith("not yet trained (1): Bert Late (b.op)")
    override = [s for s in signatures_of(revision) if s.meaning == APPROVED_DESPITE_TRAINING]
    assert len(override) == 1 and override[0].printed_name == "Quinn QA"
    assert "1 not yet trained, named in the override note" in override[0].comment
    proof, row_version = prove(p.qa), version(revision)
    with pytest.raises(InvalidTransition), transaction():
        release.override_release(revision, actor=p.qa, proof=proof, expected_row_version=row_version,
                                 justification="again")


def test_a_document_released_on_the_date_is_not_held(app, p, make_user):
    a = make_user("a.op", roles={"operator"})
    hold([a], p.job_function_id)
    revision = approved_revision(p, new_document(p), effective_on=clock.now_utc().date())
    assert run(services.release_due, clock.now_utc().date()) == [revision]
    assert _rows(user_id=a.id)[0].status == OPEN  # still to train, and not qualified until then


def test_periodic_retraining_is_assigned_before_it_lapses_once_and_by_the_daily_command(app, p, coordinator):
    from features.support.documents import train

    hold([p.operator], p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    train(p.operator, revision)
    completed_on = clock.now_utc().date()
    run(matrix.set_requirement, subject_of(document), p.job_function_id, recurrence_months=12, days_allowed=30,
        actor=coordinator, audit_reason="Annual retraining")
    cli = app.test_cli_runner()
    clock.freeze(clock.now_utc() + timedelta(days=300))  # lapses in ~65 days: not yet within the 30-day window
    assert cli.invoke(args=["training", "retraining-due"]).output.strip() == "assigned 0 periodic retrainings due " \
        f"by {clock.now_utc().date()}"
    clock.freeze(clock.now_utc() + timedelta(days=40))
    result = cli.invoke(args=["training", "retraining-due"])
    assert result.exit_code == 0 and result.output.startswith("assigned 1 periodic retraining due by")
    rows = _rows(user_id=p.operator.id)
    item = item_of(revision)
    assert [(a.item_id, a.cycle, a.status, a.source_type) for a in rows] == [
        (item.id, 0, COMPLETED, "revision_approval"), (item.id, 1, OPEN, "recurrence")]
    from qms.rules import add_months

    assert rows[1].due_on == add_months(completed_on, 12)
    assert cli.invoke(args=["training", "retraining-due"]).output.startswith("assigned 0")  # idempotent
    # the old name still works for existing schedules, and says it moved
    old = cli.invoke(args=["qms", "retraining-due"])
    assert old.exit_code == 0
    assert "`flask qms retraining-due` is now `flask training retraining-due`" in old.output
    assert "assigned 0 periodic retrainings due by" in old.output


def test_an_override_for_a_large_audience_names_everyone_in_the_note(app, p, make_user):
    people = [make_user(f"op{i:03d}", roles={"operator"}, full_name=f"Operator Number {i:03d}") for i in range(80)]
    hold(people, p.job_function_id)
    document = new_document(p)
    run(services.update_document_metadata, document, actor=p.qa, release_policy=RELEASE_WHEN_TRAINED,
        audit_reason="Critical procedure")
    revision = approved_revision(p, document, effective_on=clock.now_utc().date())
    run(release.override_release, revision, actor=p.qa, proof=prove(p.qa), expected_row_version=version(revision),
        justification="Line restart approved by the site head")
    db.session.refresh(revision)
    assert revision.status == EFFECTIVE
    assert all(f"Operator Number {i:03d} (op{i:03d})" in revision.release_override_note for i in range(80))


def test_making_a_document_obsolete_cancels_its_open_training(app, p, make_user):
    from training.read_and_sign import services as read_and_sign

    waiting = make_user("wait.op", roles={"operator"})
    hold([waiting], p.job_function_id)
    revision = effective_revision(p, new_document(p))
    row = _rows(user_id=waiting.id)[0]
    run(read_and_sign.mark_opened, row, waiting)
    run(services.make_obsolete, revision, actor=p.qa, proof=prove(p.qa), expected_row_version=version(revision),
        reason="Process moved to another site")
    row = _rows(user_id=waiting.id)[0]
    assert (row.status, row.closed_reason) == (CANCELLED, "SOP-QA-001 made obsolete: Process moved to another site")
    proof = prove(waiting)
    with pytest.raises(InvalidTransition), transaction():  # nothing left to sign
        read_and_sign.complete(row, user=waiting, proof=proof, expected_version=None)


def test_a_requirement_dated_ahead_assigns_on_its_first_day_and_cancels_after_its_last(app, p, coordinator, make_user):
    """Dated validity: a requirement valid from next week assigns nobody today; the daily reconciliation assigns its
    holders on its first day, and cancels their open training once its validity has ended."""
    packer = _second_function(p)
    people = [make_user(f"packer{i}", roles={"operator"}) for i in range(2)]
    hold(people, packer.id)
    document = new_document(p)
    revision = effective_revision(p, document)
    today = clock.now_utc().date()
    row, assigned = run(matrix.set_requirement, subject_of(document), packer.id, valid_from=today + timedelta(days=7),
                        valid_to=today + timedelta(days=37), reason="New packaging line from next week",
                        actor=coordinator)
    assert assigned == 0 and _rows(item_id=item_of(revision).id) == []
    assert (row.valid_from, row.valid_to, row.reason) == (today + timedelta(days=7), today + timedelta(days=37),
                                                          "New packaging line from next week")
    cli = app.test_cli_runner()
    clock.freeze(clock.now_utc() + timedelta(days=7))
    result = cli.invoke(args=["training", "reconcile-due"])
    assert result.exit_code == 0, result.output
    assert "applied 1 dated requirement: 2 assignments created, 0 cancelled" in result.output
    assert {(a.user_id, a.status, a.source_type) for a in _rows(item_id=item_of(revision).id)} == {
        (u.id, OPEN, "matrix") for u in people}
    assert "applied 1 dated requirement: 0 assignments created, 0 cancelled" in cli.invoke(
        args=["training", "reconcile-due"]).output  # idempotent
    train(people[0], revision)
    clock.freeze(clock.now_utc() + timedelta(days=30))
    result = cli.invoke(args=["training", "reconcile-due"])
    assert "applied 1 dated requirement: 0 assignments created, 1 cancelled" in result.output
    by_user = {a.user_id: a for a in _rows(item_id=item_of(revision).id)}
    assert by_user[people[0].id].status == COMPLETED  # completed training is never touched
    assert by_user[people[1].id].status == CANCELLED
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_a_requirement_valid_until_before_it_starts_is_refused_naming_the_field(app, p, coordinator):
    document = new_document(p)
    today = clock.now_utc().date()
    with pytest.raises(ValidationError) as caught, transaction():
        matrix.set_requirement(subject_of(document), p.job_function_id, valid_from=today, valid_to=today,
                               actor=coordinator)
    assert caught.value.field == "valid_to" and "must be after" in caught.value.message
