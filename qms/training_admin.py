"""Training coordination over controlled documents: manual and bulk assignment, periodic retraining, gap analysis.

Use cases flush, never commit; views and commands wrap them in core.db.transaction(). Assignments are written by the
training engine (with their audit rows); this module decides who needs what.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason
from core.errors import NotPermitted, ValidationError
from core.org import Department, JobFunction, Site
from qms.documents.models import APPROVED, EFFECTIVE, Document, DocumentAudience, Revision
from qms.rules import add_months
from training import engine
from training.models import (
    COMPLETED,
    OPEN,
    SOURCE_MANUAL,
    SOURCE_RECURRENCE,
    TrainingAssignment,
    UserJobFunction,
)

MAX_BULK = 20_000


def _require(actor: User | None) -> None:
    if actor is None or not actor.active or not actor.can("training.manage"):
        raise NotPermitted("Assigning training needs the permission 'training.manage' (training coordinator).")


def find_document(number: str) -> Document:
    number = (number or "").strip().upper()
    document = db.session.scalar(sa.select(Document).where(Document.number == number)) if number else None
    if document is None:
        raise ValidationError("document", f"No document numbered {number!r}." if number else
                              "Document number is required.")
    return document


def current_revision(document: Document) -> Revision | None:
    """The revision people train on now: the newest approved or effective one."""
    return db.session.scalar(sa.select(Revision).where(Revision.document_id == document.id,
                                                       Revision.status.in_([APPROVED, EFFECTIVE]))
                             .order_by(Revision.major.desc(), Revision.minor.desc()).limit(1))


# --- manual and bulk assignment ----------------------------------------------------------------------------------


@dataclass
class Selection:
    """Who a coordinator assigns to: everyone matching all given filters, plus a list of usernames."""

    site_id: int | None = None
    department_id: int | None = None
    job_function_id: int | None = None
    usernames: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.site_id or self.department_id or self.job_function_id or self.usernames)


def select_people(selection: Selection) -> list[User]:
    """Active people chosen by site/department/job function (all that are given must match) and by username."""
    if selection.is_empty():
        raise ValidationError("usernames", "Choose who to assign: a site, a department, a job function or a list of "
                                           "usernames.")
    chosen: dict[int, User] = {}
    if selection.site_id or selection.department_id or selection.job_function_id:
        if selection.site_id and db.session.get(Site, selection.site_id) is None:
            raise ValidationError("site_id", "Site does not exist.")
        if selection.department_id and db.session.get(Department, selection.department_id) is None:
            raise ValidationError("department_id", "Department does not exist.")
        if selection.job_function_id and db.session.get(JobFunction, selection.job_function_id) is None:
            raise ValidationError("job_function_id", "Job function does not exist.")
        stmt = sa.select(User).where(User.active.is_(True))
        if selection.site_id:
            stmt = stmt.where(User.site_id == selection.site_id)
        if selection.department_id:
            stmt = stmt.where(User.department_id == selection.department_id)
        if selection.job_function_id:
            stmt = stmt.where(User.id.in_(engine.holders([selection.job_function_id])))
        chosen.update({u.id: u for u in db.session.scalars(stmt)})
    names = sorted({n.strip().lower() for n in selection.usernames if n.strip()})
    if names:
        found = {u.username: u for u in db.session.scalars(sa.select(User).where(User.username.in_(names)))}
        unknown = [n for n in names if n not in found]
        if unknown:
            raise ValidationError("usernames", f"Unknown username(s): {', '.join(unknown)}.")
        inactive = [n for n in names if not found[n].active]
        if inactive:
            raise ValidationError("usernames", f"Deactivated account(s) cannot be assigned training: "
                                               f"{', '.join(inactive)}.")
        chosen.update({u.id: u for u in found.values()})
    if len(chosen) > MAX_BULK:
        raise ValidationError("usernames", f"{len(chosen):,} people selected; at most {MAX_BULK:,} per assignment.")
    return sorted(chosen.values(), key=lambda u: u.full_name)


@dataclass(frozen=True)
class AssignResult:
    revision: Revision
    created: int
    already_open: list[str]  # usernames who already had open training on the revision


def assign_manually(document: Document, selection: Selection, *, due_on: date | None, reason: str,
                    actor: User) -> AssignResult:
    """A coordinator assigns the document's current revision to the selected people with a due date and a reason.

    People with open training on that revision are left as they are (and listed); people who completed it are
    assigned again (retraining, the next cycle). One transaction: everyone is assigned, or nobody."""
    _require(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("reason", "A reason is required (it is recorded on every assignment).")
    if len(reason) > 2000:
        raise ValidationError("reason", "Reason must be at most 2,000 characters.")
    today = now_utc().date()
    if due_on is None:
        raise ValidationError("due_on", "Due date is required.")
    if due_on < today:
        raise ValidationError("due_on", f"Due date cannot be in the past (today is {today.isoformat()}).")
    revision = current_revision(document)
    if revision is None:
        raise ValidationError("document", f"{document.number} has no approved or effective revision to train on.")
    people = select_people(selection)
    cycles = engine.latest_cycles([u.id for u in people], revision.id)
    already = [u.username for u in people if u.id in cycles and cycles[u.id][1] == OPEN]
    rows = [{"user_id": u.id, "document_id": document.id, "revision_id": revision.id,
             "cycle": cycles[u.id][0] + 1 if u.id in cycles else 0, "source_type": SOURCE_MANUAL,
             "source_id": actor.id, "due_on": due_on, "assigned_reason": reason}
            for u in people if not (u.id in cycles and cycles[u.id][1] == OPEN)]
    default_reason(f"Assigned by hand: {reason}")
    created = engine.create_assignments(rows)
    return AssignResult(revision, created, already)


# --- periodic retraining -----------------------------------------------------------------------------------------


def retraining_due(today: date | None = None) -> int:
    """Assign periodic retraining that falls due: for each requirement with a retraining interval, each holder whose
    last completion on the document lapses within the training window (the requirement's days allowed, else the
    document's) and who has no open training on it gets the current revision again, due when the last training
    lapses. Idempotent: run daily. Returns how many were assigned."""
    today = today or now_utc().date()
    requirements = db.session.execute(
        sa.select(DocumentAudience, Document).join(Document, Document.id == DocumentAudience.document_id)
        .where(DocumentAudience.recurrence_months.is_not(None))).all()
    default_reason("Periodic retraining due")
    created = 0
    for requirement, document in requirements:
        revision = current_revision(document)
        if revision is None:
            continue
        holders = engine.holders([requirement.job_function_id], today)
        if not holders:
            continue
        last = dict(db.session.execute(
            sa.select(TrainingAssignment.user_id, sa.func.max(TrainingAssignment.completed_at))
            .where(TrainingAssignment.document_id == document.id, TrainingAssignment.status == COMPLETED,
                   TrainingAssignment.user_id.in_(holders))
            .group_by(TrainingAssignment.user_id)).all())
        busy = set(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
            TrainingAssignment.document_id == document.id, TrainingAssignment.status == OPEN,
            TrainingAssignment.user_id.in_(holders))))
        window = requirement.days_allowed if requirement.days_allowed is not None else document.training_window_days
        due_people = {}
        for uid, completed_at in last.items():
            if uid in busy or completed_at is None:
                continue
            lapses = add_months(completed_at.date(), requirement.recurrence_months)
            if lapses - timedelta(days=window) <= today:
                due_people[uid] = lapses
        if not due_people:
            continue
        cycles = engine.latest_cycles(list(due_people), revision.id)
        rows = [{"user_id": uid, "document_id": document.id, "revision_id": revision.id,
                 "cycle": cycles[uid][0] + 1 if uid in cycles else 0, "source_type": SOURCE_RECURRENCE,
                 "source_id": requirement.id, "due_on": max(lapses, today),
                 "assigned_reason": f"Retraining every {requirement.recurrence_months} months"}
                for uid, lapses in sorted(due_people.items())]
        created += engine.create_assignments(rows)
    return created


# --- gap analysis ------------------------------------------------------------------------------------------------


@dataclass
class Gaps:
    functions_without_requirements: list[JobFunction]
    requirements_not_effective: list[tuple[Document, JobFunction, str]]  # (document, job function, why)
    people_without_function: list[User]
    overdue: list[tuple[User, int, date]]  # (person, overdue assignments, oldest due date)


def gap_analysis(today: date | None = None) -> Gaps:
    today = today or now_utc().date()
    functions = list(db.session.scalars(sa.select(JobFunction).where(
        JobFunction.active.is_(True), ~JobFunction.id.in_(sa.select(DocumentAudience.job_function_id)))
        .order_by(JobFunction.code)))
    effective_docs = set(db.session.scalars(sa.select(Revision.document_id).where(Revision.status == EFFECTIVE)))
    approved_docs = set(db.session.scalars(sa.select(Revision.document_id).where(Revision.status == APPROVED)))
    not_effective = []
    for document, function in db.session.execute(
            sa.select(Document, JobFunction)
            .select_from(DocumentAudience)
            .join(Document, Document.id == DocumentAudience.document_id)
            .join(JobFunction, JobFunction.id == DocumentAudience.job_function_id)
            .order_by(Document.number, JobFunction.code)):
        if document.id not in effective_docs:
            why = "approved, not yet effective" if document.id in approved_docs else "no effective revision"
            not_effective.append((document, function, why))
    held_now = sa.select(UserJobFunction.user_id).where(
        UserJobFunction.valid_from <= today,
        sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > today))
    people = list(db.session.scalars(sa.select(User).where(User.active.is_(True), ~User.id.in_(held_now))
                                     .order_by(User.full_name)))
    overdue_rows = db.session.execute(
        sa.select(User, sa.func.count(TrainingAssignment.id), sa.func.min(TrainingAssignment.due_on))
        .join(TrainingAssignment, TrainingAssignment.user_id == User.id)
        .where(User.active.is_(True), TrainingAssignment.status == OPEN, TrainingAssignment.due_on < today)
        .group_by(User.id).order_by(sa.func.min(TrainingAssignment.due_on), User.full_name)).all()
    return Gaps(functions, not_effective, people, [(u, n, d) for u, n, d in overdue_rows])


# --- the matrix grid ---------------------------------------------------------------------------------------------


def matrix(*, department_id: int | None = None, doc_type: str | None = None, query: str | None = None,
           limit: int = 200) -> tuple[list[Document], list[JobFunction], dict[tuple[int, int], DocumentAudience]]:
    """Documents (rows, not obsolete-only), active job functions (columns) and the requirement in each cell."""
    stmt = sa.select(Document).order_by(Document.number)
    if department_id:
        stmt = stmt.where(Document.department_id == department_id)
    if doc_type:
        stmt = stmt.where(Document.doc_type == doc_type)
    if query:
        like = f"%{query.strip()}%"
        stmt = stmt.where(sa.or_(Document.number.ilike(like), Document.title.ilike(like)))
    documents = list(db.session.scalars(stmt.limit(limit)))
    functions = list(db.session.scalars(sa.select(JobFunction).where(JobFunction.active.is_(True))
                                        .order_by(JobFunction.code)))
    cells = {(r.document_id, r.job_function_id): r for r in db.session.scalars(
        sa.select(DocumentAudience).where(DocumentAudience.document_id.in_([d.id for d in documents])))}
    return documents, functions, cells


def holders_count(job_function_ids: Iterable[int]) -> int:
    return len(engine.holders(job_function_ids))
