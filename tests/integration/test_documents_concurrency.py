"""Document control when several people or servers act at the same moment: no lost signature, no second open
draft, and every due revision released exactly once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import clock
from core.auth.models import User
from core.db import db, transaction
from core.errors import InvalidTransition
from features.support.documents import (
    hold,
    new_document,
    new_revision,
    prove,
    review_as,
    route,
    setup_people,
    submit,
    version,
)
from qms.documents import services
from qms.documents.models import APPROVED, EFFECTIVE, IN_REVIEW, Document, Revision
from qms.documents.publish import item_of
from training.models import TrainingAssignment

HOLD = 0.5  # seconds the first transaction stays open after its change, so the second really overlaps it


@pytest.fixture
def p(app, make_user):
    return setup_people(make_user)


def _in_thread(app, errors: list[BaseException], action) -> threading.Thread:
    def target() -> None:
        try:
            with app.app_context():
                action()
                db.session.remove()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    return threading.Thread(target=target)


def _overlapping(app, first, second) -> list[BaseException]:
    """Run `first` in a transaction held open for HOLD seconds and `second` in another that starts meanwhile."""
    errors: list[BaseException] = []
    outcome: dict[str, Any] = {}
    changed = threading.Event()

    def one() -> None:
        with transaction():
            first()
            changed.set()
            time.sleep(HOLD)

    def two() -> None:
        changed.wait(10)
        try:
            with transaction():
                second()
        except InvalidTransition as exc:
            outcome["refused"] = exc

    db.session.rollback()
    threads = [_in_thread(app, errors, one), _in_thread(app, errors, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors + ([outcome["refused"]] if "refused" in outcome else [])


def test_two_authors_starting_a_revision_at_once_open_only_one(app, p):
    document_id = new_document(p).id
    author_id, other_id = p.author.id, p.reviewer2.id  # both hold documents.author

    def start(user_id: int):
        def action() -> None:
            services.start_revision(db.session.get(Document, document_id), author=db.session.get(User, user_id),
                                    major=True, change_summary="First", reason="New", content_markdown="# Text\n")
        return action

    outcome = _overlapping(app, start(author_id), start(other_id))
    assert len(outcome) == 1 and isinstance(outcome[0], InvalidTransition), outcome
    assert "already has an open revision" in outcome[0].message
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Revision)) == 1


def test_the_last_two_approvers_signing_at_once_still_approve_the_revision(app, p):
    hold([p.operator, p.reviewer2], p.job_function_id)
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer], approvers=[p.qa, p.qa2])
    submit(p, revision)
    review_as(p.reviewer, revision)
    seen = version(revision)  # both approvers loaded the page before either signed
    proofs = {p.qa.id: prove(p.qa), p.qa2.id: prove(p.qa2)}
    revision_id = revision.id

    def approve(user_id: int):
        def action() -> None:
            services.approve(db.session.get(Revision, revision_id), actor=db.session.get(User, user_id),
                             proof=proofs[user_id], expected_row_version=seen)
        return action

    assert _overlapping(app, approve(p.qa.id), approve(p.qa2.id)) == []
    db.session.expire_all()
    revision = db.session.get(Revision, revision_id)
    assert revision.status == APPROVED, "both signed, but neither saw the other's signature"
    assert services.outstanding(revision) == {"review": [], "approve": []}
    statuses = db.session.scalars(sa.select(version_class(Revision).status)
                                  .where(version_class(Revision).id == revision_id)).all()
    assert statuses.count(APPROVED) == 1, "approved by one transition"
    assigned = db.session.scalars(sa.select(TrainingAssignment.user_id)
                                  .where(TrainingAssignment.item_id == item_of(revision).id)).all()
    assert sorted(assigned) == sorted([p.operator.id, p.reviewer2.id]), "training assigned once"
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


THREADS = 6
DOCUMENTS = 12
DOUBLED = 4  # documents with two revisions due on the same day


def _due_revisions(p, today) -> list[int]:
    """Documents with revision 1.0 in force and 1.1 (and for some 1.2) approved and due, written directly: this
    test is about the release, not about how the revisions were signed."""
    now = clock.now_utc()
    due = []
    with transaction():
        for n in range(DOCUMENTS):
            document = Document(number=f"SOP-QA-{n:03d}", title=f"Procedure {n}", doc_type="SOP",
                                department_id=p.department_id, owner_id=p.author.id, created_at=now)
            labels = [(1, 0), (1, 1)] + ([(1, 2)] if n < DOUBLED else [])
            revisions = []
            for major, minor in labels:
                revision = Revision(document=document, major=major, minor=minor, content_markdown=f"# {major}.{minor}",
                                    change_summary="Update", reason="Periodic review", author_id=p.author.id,
                                    submitted_at=now, approved_at=now, created_at=now)
                revision.content_sha256 = revision.computed_content_sha256()
                if (major, minor) == (1, 0):
                    revision.status, revision.effective_on, revision.effective_at = EFFECTIVE, today, now
                else:
                    revision.status, revision.effective_on = APPROVED, today
                revisions.append(revision)
            db.session.add(document)
            db.session.add_all(revisions)
            db.session.flush()
            due.extend(r.id for r in revisions[1:])
    return due


@pytest.mark.postgres_only
def test_release_due_run_by_several_servers_at_once_releases_each_revision_exactly_once(app, p):
    clock.freeze(None)  # real time: each run stamps its own release time, so a double release would show
    today = clock.now_utc().date()
    due = _due_revisions(p, today - timedelta(days=1))
    released: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def server(n: int):
        def action() -> None:
            barrier.wait()
            with transaction():
                released[n] = [r.id for r in services.release_due(today)]
        return action

    db.session.rollback()
    threads = [_in_thread(app, errors, server(n)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []

    all_released = [rid for ids in released.values() for rid in ids]
    assert sorted(all_released) == sorted(due), "every due revision released, none twice"
    db.session.expire_all()
    for document in db.session.scalars(sa.select(Document)):
        in_force = [r for r in document.revisions if r.status == EFFECTIVE]
        newest = max(document.revisions, key=lambda r: (r.major, r.minor))
        assert in_force == [newest], f"{document.number}: {[(r.label, r.status) for r in document.revisions]}"
        assert all(r.superseded_at is not None for r in document.revisions if r is not newest)

    RevisionVersion = version_class(Revision)
    for revision_id in due:
        stamps = set(db.session.scalars(sa.select(RevisionVersion.effective_at)
                                        .where(RevisionVersion.id == revision_id,
                                               RevisionVersion.effective_at.is_not(None))))
        assert len(stamps) == 1, f"revision {revision_id} was released {len(stamps)} times"

    assert services.release_due(today) == []
    db.session.rollback()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_statuses_after_a_release_leave_no_revision_in_review(app, p):
    # sanity for the set-up above on every database: one run releases everything due
    today = clock.now_utc().date()
    due = _due_revisions(p, today)
    with transaction():
        assert sorted(r.id for r in services.release_due(today)) == sorted(due)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Revision)
                             .where(Revision.status.in_([APPROVED, IN_REVIEW]))) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Revision)
                             .where(Revision.status == EFFECTIVE)) == DOCUMENTS
