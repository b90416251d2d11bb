"""Document control set-up shared by the protocol steps and the tests: an organisation, people per role, and the
signed steps.

Each step is its own unit of work, as in the application: the signing ceremony authenticates in one transaction
(committed whatever its outcome) and the business action signs in the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from core.org import Department, JobFunction, Site
from qms.documents import services
from qms.documents.models import Document, Revision
from signatures.models import Signature
from signatures.services import SignerProof, authenticate
from testkit.plugin import PASSWORD, totp_code

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday
TODAY = START.date()


@dataclass
class People:
    author: Any
    reviewer: Any
    reviewer2: Any
    qa: Any
    qa2: Any
    operator: Any
    department_id: int
    job_function_id: int


def setup_people(make_user: Callable[..., Any]) -> People:
    """The organisation and one person per part in the workflow; the clock is frozen at START."""
    clock.freeze(START)
    with transaction():
        site = Site(code="MAIN", name="Main site")
        department = Department(site=site, code="QA", name="Quality Assurance")
        job_function = JobFunction(code="OP-MIX", name="Mixing operator", department=department)
        db.session.add_all([site, department, job_function])
        db.session.flush()
        department_id, job_function_id = department.id, job_function.id
    return People(
        author=make_user("ada.author", roles={"document_author"}, full_name="Ada Author"),
        reviewer=make_user("sam.supervisor", roles={"supervisor"}, full_name="Sam Supervisor"),
        reviewer2=make_user("rita.reviewer", roles={"document_author"}, full_name="Rita Reviewer"),
        qa=make_user("quinn.qa", roles={"qa_approver"}, full_name="Quinn QA"),
        qa2=make_user("quincy.qa", roles={"qa_approver"}, full_name="Quincy QA"),
        operator=make_user("otto.operator", roles={"operator"}, full_name="Otto Operator"),
        department_id=department_id, job_function_id=job_function_id,
    )


def run(action: Callable[..., Any], *args: Any, audit_reason: str | None = None, **kwargs: Any) -> Any:
    """One unit of work around a service call, like a view or command (`audit_reason`: the reason for change)."""
    with transaction(reason=audit_reason):
        return action(*args, **kwargs)


def prove(user: Any) -> SignerProof:
    with transaction():
        proof = authenticate(user, password=PASSWORD, totp_code=totp_code(user))
    assert proof is not None, f"{user.username} could not authenticate"
    return proof


def version(revision: Revision) -> int:
    """The row version a page would have shown now."""
    db.session.refresh(revision)
    return revision.row_version


def new_document(p: People, number: str = "SOP-QA-001", **kwargs: Any) -> Document:
    fields = {"title": "Cleaning of the mixer", "doc_type": "SOP", "department_id": p.department_id,
              "owner_id": p.author.id, "audience_job_function_ids": [p.job_function_id], **kwargs}
    return run(services.create_document, number=number, actor=p.author, **fields)


def new_revision(p: People, document: Document, *, major: bool = True, content: str = "# Purpose\n\nClean it.\n",
                 author: Any = None) -> Revision:
    return run(services.start_revision, document, author=author or p.author, major=major,
               change_summary="First issue" if not document.revisions else "Update", reason="Procedure needed",
               content_markdown=content)


def route(p: People, revision: Revision, reviewers: list[Any] | None = None, approvers: list[Any] | None = None,
          actor: Any = None) -> Revision:
    reviewers = [p.reviewer] if reviewers is None else reviewers
    approvers = [p.qa] if approvers is None else approvers
    return run(services.set_routing, revision, actor=actor or p.author, reviewer_ids=[u.id for u in reviewers],
               approver_ids=[u.id for u in approvers])


def submit(p: People, revision: Revision, actor: Any = None) -> Revision:
    actor = actor or p.author
    proof = prove(actor)
    return run(services.submit_for_review, revision, actor=actor, proof=proof, expected_row_version=version(revision))


def review_as(user: Any, revision: Revision, comment: str | None = None) -> Revision:
    proof = prove(user)
    return run(services.review, revision, actor=user, proof=proof, expected_row_version=version(revision),
               comment=comment)


def approve_as(user: Any, revision: Revision, effective_on: date | None = None) -> Revision:
    proof = prove(user)
    return run(services.approve, revision, actor=user, proof=proof, expected_row_version=version(revision),
               effective_on=effective_on)


def reject_as(user: Any, revision: Revision, comment: str) -> Revision:
    proof = prove(user)
    return run(services.reject, revision, actor=user, proof=proof, expected_row_version=version(revision),
               comment=comment)


def approved_revision(p: People, document: Document, *, major: bool = True, effective_on: date | None = None,
                      content: str = "# Purpose\n\nClean it.\n") -> Revision:
    """A revision taken through routing, submission, review and approval."""
    revision = new_revision(p, document, major=major, content=content)
    route(p, revision)
    submit(p, revision)
    review_as(p.reviewer, revision)
    return approve_as(p.qa, revision, effective_on=effective_on)


def effective_revision(p: People, document: Document, *, major: bool = True,
                       content: str = "# Purpose\n\nClean it.\n") -> Revision:
    revision = approved_revision(p, document, major=major, effective_on=clock.now_utc().date(), content=content)
    run(services.release_due, clock.now_utc().date())
    db.session.refresh(revision)
    return revision


def signatures_of(revision: Revision) -> list[Signature]:
    return list(db.session.scalars(sa.select(Signature).where(Signature.record_type == revision.signable_type,
                                                              Signature.record_id == revision.id)
                                   .order_by(Signature.id)))


def count(model: type) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def tiny_pdf(text: str = "Standard operating procedure") -> bytes:
    """A small but real one-page PDF, as an author would upload."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, text)
    return bytes(pdf.output())


def hold(users: list[Any], job_function_id: int, *, days_ago: int = 30) -> None:
    """The people hold the job function since `days_ago` days (no training is reconciled: set-up only)."""
    from datetime import timedelta

    from training.models import UserJobFunction

    with transaction():
        for user in users:
            db.session.add(UserJobFunction(user_id=user.id, job_function_id=job_function_id,
                                           valid_from=clock.now_utc().date() - timedelta(days=days_ago)))


def train(user: Any, revision: Revision) -> Any:
    """The person opens and signs their open assignment on the revision ("Read and understood")."""
    from qms.documents import publish
    from training.models import OPEN, TrainingAssignment
    from training.read_and_sign import services as read_and_sign

    assignment = db.session.scalar(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id == user.id, TrainingAssignment.item_id == publish.item_of(revision).id,
        TrainingAssignment.status == OPEN))
    assert assignment is not None, f"{user.username} has no open assignment on {revision.label}"
    run(read_and_sign.mark_opened, assignment, user)
    proof = prove(user)
    run(read_and_sign.complete, assignment, user=user, proof=proof, expected_version=str(version(revision)))
    return assignment
