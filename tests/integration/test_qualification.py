"""Qualification from the history: the governing revision, version specificity, major-only retraining, periodic
retraining, and "was X qualified at time T, on which revision"."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from features.support.documents import (
    approved_revision,
    effective_revision,
    hold,
    new_document,
    run,
    setup_people,
    train,
)
from qms.documents.publish import item_of, subject_of
from training.models import OPEN, RETRAIN_MAJOR, TrainingAssignment, TrainingRequirement
from training.qualification import services as qualifications


def qualification(user, document, at=None):
    """The qualification of `user` on the document's training subject."""
    return qualifications.qualification(user, subject_of(document), at)


def qualify_many(pairs, at=None):
    """`qualifications.qualify_many` for (person, document) pairs, keyed by (user id, document id)."""
    subjects = {d.id: subject_of(d) for _u, d in pairs}
    answers = qualifications.qualify_many([(u, subjects[d.id]) for u, d in pairs], at)
    return {(u.id, d.id): answers[(u.id, subjects[d.id].id)] for u, d in pairs}


@pytest.fixture
def p(make_user):
    people = setup_people(make_user)
    hold([people.operator], people.job_function_id)
    return people


def _later(**delta):
    clock.freeze(clock.now_utc() + timedelta(**delta))
    return clock.now_utc()


def _set_requirement(document, **values):
    with transaction(reason="Matrix changed"):
        row = db.session.scalars(sa.select(TrainingRequirement).where(
            TrainingRequirement.subject_id == subject_of(document).id)).one()
        for key, value in values.items():
            setattr(row, key, value)


def test_training_on_revision_1_qualifies_until_revision_2_is_in_force_and_the_past_answer_never_changes(app, p):
    document = new_document(p)
    first = effective_revision(p, document)
    before_training = _later(hours=1)
    assert not qualification(p.operator, document).qualified
    _later(hours=1)
    train(p.operator, first)
    trained_at = _later(hours=1)
    now = qualification(p.operator, document)
    assert (now.qualified, now.required.label, now.trained.label) == (True, "1.0", "1.0")

    second = approved_revision(p, document, effective_on=clock.now_utc().date() + timedelta(days=7))
    pending = qualification(p.operator, document)
    assert pending.qualified and pending.required.source_id == first.id  # revision 1.0 governs until 2.0 is effective

    _later(days=7)
    from qms.documents import services

    run(services.release_due, clock.now_utc().date())
    after = qualification(p.operator, document)
    assert not after.qualified
    assert after.required.source_id == second.id and after.trained.source_id == first.id
    assert after.reason == "Trained on revision 1.0, not on revision 2.0."

    # the history: at each past moment the answer is what it was then
    assert not qualification(p.operator, document, before_training).qualified
    past = qualification(p.operator, document, trained_at)
    assert past.qualified and past.required.source_id == first.id and past.trained.source_id == first.id
    assert past.as_json()["trained_revision"] == "1.0"


def test_before_the_first_effective_date_the_approved_revision_governs(app, p):
    document = new_document(p)
    revision = approved_revision(p, document, effective_on=clock.now_utc().date() + timedelta(days=10))
    assert qualification(p.operator, document).required.source_id == revision.id
    train(p.operator, revision)
    assert qualification(p.operator, document).qualified


def test_major_only_requirement_gets_no_training_for_a_minor_revision_and_stays_qualified(app, p):
    document = new_document(p)
    first = effective_revision(p, document)
    train(p.operator, first)
    _set_requirement(document, retrain=RETRAIN_MAJOR)
    minor = effective_revision(p, document, major=False)
    assert minor.label == "1.1"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment).where(
        TrainingAssignment.item_id == item_of(minor).id)) == 0
    q = qualification(p.operator, document)
    assert q.qualified and q.required.source_id == minor.id and q.trained.source_id == first.id

    major = effective_revision(p, document, major=True)
    assigned = db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.item_id == item_of(major).id)).all()
    assert [(a.user_id, a.status) for a in assigned] == [(p.operator.id, OPEN)]
    assert not qualification(p.operator, document).qualified  # 1.0 never counts for 2.0


def test_open_training_on_the_minor_predecessor_stays_open_for_major_only_people(app, p):
    document = new_document(p)
    first = effective_revision(p, document)  # the operator has open training on 1.0
    _set_requirement(document, retrain=RETRAIN_MAJOR)
    effective_revision(p, document, major=False)
    row = db.session.scalar(sa.select(TrainingAssignment).where(TrainingAssignment.item_id == item_of(first).id))
    db.session.refresh(row)
    assert row.status == OPEN  # training on 1.0 still counts for 1.1 under "major revisions only"


def test_periodic_retraining_lapses_after_the_interval(app, p):
    document = new_document(p)
    revision = effective_revision(p, document)
    train(p.operator, revision)
    _set_requirement(document, recurrence_months=12)
    assert qualification(p.operator, document).qualified
    _later(days=370)
    q = qualification(p.operator, document)
    assert not q.qualified and q.reason.startswith("Periodic retraining (every 12 months) was due on")


def test_days_allowed_of_a_requirement_sets_the_due_date_of_a_new_holder(app, p, make_user):
    from training.people import services as training_services

    document = new_document(p)
    revision = effective_revision(p, document)
    _set_requirement(document, days_allowed=3)
    coordinator = make_user("coord", roles={"training_coordinator"})
    newcomer = make_user("new.hire", roles={"operator"})
    with transaction():
        training_services.grant_job_function(newcomer, p.job_function_id, actor=coordinator)
    row = db.session.scalar(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == newcomer.id))
    assert row.item_id == item_of(revision).id and row.due_on == clock.now_utc().date() + timedelta(days=3)


def test_the_batch_answer_for_a_matrix_equals_the_one_by_one_answer(app, p, make_user):
    """qualify_many (used by the team matrix) must give exactly the reference answers of qualification()."""
    others = [make_user(f"op{i}", roles={"operator"}) for i in range(3)]
    hold(others, p.job_function_id)
    people = [p.operator, *others]
    first_doc, second_doc, third_doc = (new_document(p), new_document(p, number="SOP-QA-002"),
                                        new_document(p, number="SOP-QA-003"))
    moments = []
    rev = effective_revision(p, first_doc)
    train(p.operator, rev)
    train(others[0], rev)
    moments.append(_later(hours=1))
    _set_requirement(first_doc, retrain=RETRAIN_MAJOR, recurrence_months=12)
    effective_revision(p, first_doc, major=False)
    second = approved_revision(p, second_doc, effective_on=clock.now_utc().date() + timedelta(days=3))
    train(others[1], second)
    moments.append(_later(days=5))
    from qms.documents import services

    run(services.release_due, clock.now_utc().date())
    moments.append(_later(days=400))
    for at in moments:
        pairs = [(u, d) for u in people for d in (first_doc, second_doc, third_doc)]
        batch = qualify_many(pairs, at)
        for user, document in pairs:
            one = qualification(user, document, at)
            got = batch[(user.id, document.id)]
            assert (got.qualified, got.required, got.trained, got.completed_at, got.reason) == (
                one.qualified, one.required, one.trained, one.completed_at, one.reason), (user.username,
                                                                                          document.number, at)
    # 400 days on: the 12-monthly SOP-QA-001 lapsed for everyone; SOP-QA-002 (no interval) still counts for op1
    assert [u.username for u in people if batch[(u.id, first_doc.id)].qualified] == []
    assert [u.username for u in people if batch[(u.id, second_doc.id)].qualified] == ["op1"]


def test_changing_the_matrix_today_does_not_change_an_answer_about_the_past(app, p, coordinator):
    from training.matrix.services import set_requirement

    document = new_document(p)
    first = effective_revision(p, document)
    train(p.operator, first)
    _set_requirement(document, retrain=RETRAIN_MAJOR)
    effective_revision(p, document, major=False)
    then = _later(hours=1)
    assert qualification(p.operator, document, then).qualified  # 1.0 counts for 1.1 under "major only"
    _later(days=2)
    run(set_requirement, subject_of(document), p.job_function_id, retrain="every", actor=coordinator,
        audit_reason="Every change now needs training")
    assert qualification(p.operator, document, then).qualified  # the matrix as it stood then
    assert not qualification(p.operator, document).qualified  # now 1.1 itself is required


def test_training_ahead_on_the_approved_successor_qualifies_before_it_is_effective(app, p, coordinator, make_user):
    from training.people import services as training_services

    document = new_document(p)
    effective_revision(p, document)
    second = approved_revision(p, document, effective_on=clock.now_utc().date() + timedelta(days=14))
    newcomer = make_user("new.hire", roles={"operator"})
    with transaction():
        training_services.grant_job_function(newcomer, p.job_function_id, actor=coordinator)
    train(newcomer, second)  # the engine assigned the approved 2.0 only
    q = qualification(newcomer, document)
    assert q.qualified and q.required.label == "1.0" and q.trained.source_id == second.id
