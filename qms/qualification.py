"""Qualification: is a person trained on the revision of a document that governs their work, now or at any past time?

Answered from the history, never from a flag: revisions carry when they became effective, were superseded or made
obsolete; completions carry their signature time; job functions held carry their dates. So "was Otto qualified on
SOP-QA-001 on 3 March at 10:00, and on which revision?" has one answer, the same today and in five years.

The rule:
- The revision that governs at time T is the one in force (effective at or before T, not yet superseded or obsolete).
  Before a document's first revision becomes effective, its approved revision governs (people train ahead of it).
- A person is qualified when they completed (signed "Read and understood" at or before T) the governing revision,
  or trained ahead on its approved successor (before that becomes effective).
  When every training requirement of their job functions on the document says "major revisions only", training on
  an earlier minor revision of the same major revision counts too (2.0 counts for 2.1, never for 3.0).
- When a requirement sets a retraining interval, the qualifying completion must be more recent than that interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.org import Department, JobFunction
from qms.documents.models import (
    RETRAIN_EVERY,
    RETRAIN_MAJOR,
    Document,
    DocumentAudience,
    Revision,
)
from qms.rules import add_months
from signatures import models as sig
from training.models import COMPLETED, OPEN, TrainingAssignment, UserJobFunction

# cell states of the team matrix
QUALIFIED = "qualified"
IN_TRAINING = "in_training"
OVERDUE = "overdue"
NOT_QUALIFIED = "not_qualified"
STATE_LABELS = {QUALIFIED: "Qualified", IN_TRAINING: "In training", OVERDUE: "Overdue",
                NOT_QUALIFIED: "Not qualified"}


@dataclass(frozen=True)
class Qualification:
    user: User
    document: Document
    at: datetime
    qualified: bool
    required: Revision | None  # the revision governing at `at` (None: the document had none)
    trained: Revision | None  # the revision whose completion qualifies (or the newest completed one)
    completed_at: datetime | None
    reason: str

    def as_json(self) -> dict:
        return {
            "user": self.user.username,
            "name": self.user.full_name,
            "document": self.document.number,
            "title": self.document.title,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "qualified": self.qualified,
            "current_revision": self.required.label if self.required else None,
            "trained_revision": self.trained.label if self.trained else None,
            "completed_at": self.completed_at.isoformat().replace("+00:00", "Z") if self.completed_at else None,
            "reason": self.reason,
        }


def _governs(revisions: list[Revision], at: datetime) -> Revision | None:
    """Of one document's revisions: the one in force at `at`; before the first is effective, the newest approved."""
    newest_first = sorted(revisions, key=lambda r: (r.major, r.minor), reverse=True)
    for r in newest_first:
        if r.effective_at is not None and r.effective_at <= at and (r.superseded_at is None or r.superseded_at > at) \
                and (r.obsoleted_at is None or r.obsoleted_at > at):
            return r
    if any(r.effective_at is not None and r.effective_at <= at for r in revisions):
        return None  # superseded without successor or made obsolete: nothing governs any more
    return next((r for r in newest_first if r.approved_at is not None and r.approved_at <= at), None)


def _revisions_of(document_ids: list[int]) -> dict[int, list[Revision]]:
    by_document: dict[int, list[Revision]] = {d: [] for d in document_ids}
    for revision in db.session.scalars(sa.select(Revision).where(Revision.document_id.in_(document_ids))):
        by_document[revision.document_id].append(revision)
    return by_document


def governing_revision(document_id: int, at: datetime) -> Revision | None:
    """The revision in force at `at`; before the first one is effective, the newest approved one."""
    return _governs(_revisions_of([document_id])[document_id], at)


def _held_job_functions(user_id: int, on: date) -> list[int]:
    return list(db.session.scalars(sa.select(UserJobFunction.job_function_id).where(
        UserJobFunction.user_id == user_id, UserJobFunction.valid_from <= on,
        sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))))


@dataclass(frozen=True)
class RequirementThen:
    """A training requirement as it stood at a moment (from its audited history)."""

    document_id: int
    job_function_id: int
    retrain: str
    recurrence_months: int | None


def requirements_at(document_ids: list[int], at: datetime) -> dict[int, list[RequirementThen]]:
    """document id -> the training matrix requirements on it as they stood at `at`, read from the audit trail
    (version rows), so that changing the matrix today never changes an answer about the past."""
    from sqlalchemy_continuum import version_class

    from core.audit import AuditTransaction

    if not document_ids:
        return {}
    v = version_class(DocumentAudience)
    latest = (sa.select(v.id, sa.func.max(v.transaction_id).label("tx"))
              .join(AuditTransaction, AuditTransaction.id == v.transaction_id)
              .where(AuditTransaction.issued_at <= at, v.document_id.in_(document_ids))
              .group_by(v.id).subquery())
    found: dict[int, list[RequirementThen]] = {}
    for row in db.session.execute(sa.select(v.document_id, v.job_function_id, v.retrain, v.recurrence_months,
                                            v.operation_type)
                                  .join(latest, sa.and_(latest.c.id == v.id, latest.c.tx == v.transaction_id))):
        if row.operation_type == 2:  # removed from the matrix by then
            continue
        found.setdefault(row.document_id, []).append(RequirementThen(
            row.document_id, row.job_function_id, row.retrain or RETRAIN_EVERY, row.recurrence_months))
    return found


def requirements_for(user_id: int, document_id: int, on: date | datetime) -> list[RequirementThen]:
    """The training matrix cells that required this document of the person then (through job functions held that
    day, with the matrix as it stood)."""
    from datetime import UTC

    at = on if isinstance(on, datetime) else _end_of(on)
    held = set(_held_job_functions(user_id, at.astimezone(UTC).date()))
    if not held:
        return []
    return [r for r in requirements_at([document_id], at).get(document_id, []) if r.job_function_id in held]


def _policy(requirements: list[RequirementThen]) -> tuple[bool, int | None]:
    """(major revisions only?, strictest retraining interval in months)."""
    major_only = bool(requirements) and all(r.retrain == RETRAIN_MAJOR for r in requirements)
    intervals = [r.recurrence_months for r in requirements if r.recurrence_months]
    return major_only, (min(intervals) if intervals else None)


def _end_of(day: date) -> datetime:
    from datetime import UTC

    return datetime.combine(day, time.max, tzinfo=UTC)


def _evaluate(user: User, document: Document, at: datetime, required: Revision | None,
              requirements: list[RequirementThen], completions: list[tuple[datetime, Revision]]) -> Qualification:
    """The rule (module docstring), on facts already loaded; `completions` newest first, none after `at`."""
    newest = completions[0] if completions else None

    def result(ok: bool, trained: Revision | None, when: datetime | None, reason: str) -> Qualification:
        return Qualification(user, document, at, ok, required, trained, when, reason)

    if required is None:
        return result(False, newest[1] if newest else None, newest[0] if newest else None,
                      f"{document.number} had no approved or effective revision at that time.")
    major_only, months = _policy(requirements)
    counting = [(when, rev) for when, rev in completions
                if rev.id == required.id
                or (major_only and rev.major == required.major and rev.minor <= required.minor)
                # trained ahead on the approved successor, before its effective date
                or ((rev.major, rev.minor) > (required.major, required.minor) and rev.approved_at is not None
                    and rev.approved_at <= at and (rev.obsoleted_at is None or rev.obsoleted_at > at))]
    if not counting:
        if newest:
            return result(False, newest[1], newest[0],
                          f"Trained on revision {newest[1].label}, not on revision {required.label}.")
        return result(False, None, None, f"Not trained on {document.number} revision {required.label}.")
    when, rev = counting[0]
    if months:
        lapses = _end_of(add_months(when.date(), months))
        if lapses < at:
            return result(False, rev, when, f"Periodic retraining (every {months} months) was due on "
                                            f"{add_months(when.date(), months).isoformat()}.")
    return result(True, rev, when, f"Trained on revision {rev.label}.")


def _completions(user_ids: list[int], document_ids: list[int], at: datetime
                 ) -> dict[tuple[int, int], list[tuple[datetime, Revision]]]:
    found: dict[tuple[int, int], list[tuple[datetime, Revision]]] = {}
    for uid, when, revision in db.session.execute(
            sa.select(TrainingAssignment.user_id, TrainingAssignment.completed_at, Revision)
            .join(Revision, Revision.id == TrainingAssignment.revision_id)
            .where(TrainingAssignment.user_id.in_(user_ids), TrainingAssignment.document_id.in_(document_ids),
                   TrainingAssignment.status == COMPLETED, TrainingAssignment.completed_at <= at)
            .order_by(TrainingAssignment.completed_at.desc(), TrainingAssignment.id.desc())):
        found.setdefault((uid, revision.document_id), []).append((when, revision))
    return found


def qualification(user: User, document: Document, at: datetime | None = None) -> Qualification:
    """Was `user` qualified on `document` at `at` (default now)? The reference for `qualify_many`."""
    at = at or now_utc()
    return _evaluate(user, document, at, governing_revision(document.id, at),
                     requirements_for(user.id, document.id, at),
                     _completions([user.id], [document.id], at).get((user.id, document.id), []))


def qualify_many(pairs: list[tuple[User, Document]], at: datetime | None = None
                 ) -> dict[tuple[int, int], Qualification]:
    """`qualification()` for many (person, document) pairs at once, in a handful of queries whatever their number
    (a department's matrix is thousands of cells). Same rule, same answers: (user id, document id) -> answer."""
    at = at or now_utc()
    if not pairs:
        return {}
    user_ids = sorted({u.id for u, _d in pairs})
    document_ids = sorted({d.id for _u, d in pairs})
    governing = {doc_id: _governs(revisions, at) for doc_id, revisions in _revisions_of(document_ids).items()}
    on = at.date()
    held: dict[int, set[int]] = {}
    for start in range(0, len(user_ids), 5000):
        for uid, jf in db.session.execute(sa.select(UserJobFunction.user_id, UserJobFunction.job_function_id).where(
                UserJobFunction.user_id.in_(user_ids[start:start + 5000]), UserJobFunction.valid_from <= on,
                sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))):
            held.setdefault(uid, set()).add(jf)
    requirements = requirements_at(document_ids, at)
    completions: dict[tuple[int, int], list[tuple[datetime, Revision]]] = {}
    for start in range(0, len(user_ids), 1000):
        completions.update(_completions(user_ids[start:start + 1000], document_ids, at))
    answers = {}
    for user, document in pairs:
        mine = held.get(user.id, set())
        answers[(user.id, document.id)] = _evaluate(
            user, document, at, governing[document.id],
            [r for r in requirements.get(document.id, []) if r.job_function_id in mine],
            completions.get((user.id, document.id), []))
    return answers


# --- the team matrix --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    state: str
    revision: str | None
    detail: str
    due_on: date | None = None  # of the training open at that moment (in training, overdue)

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]


def team_members(supervisor: User | None = None, department_id: int | None = None) -> list[User]:
    """Active direct reports of `supervisor`, or the active people of a department."""
    stmt = sa.select(User).where(User.active.is_(True)).order_by(User.full_name)
    if supervisor is not None:
        stmt = stmt.where(User.supervisor_id == supervisor.id)
    if department_id is not None:
        stmt = stmt.where(User.department_id == department_id)
    return list(db.session.scalars(stmt))


def team_matrix(members: list[User], at: datetime | None = None) -> tuple[list[Document], dict[tuple[int, int], Cell]]:
    """The documents the members' job functions require (columns) and a cell per (user, document) that is required:
    qualified, in training (open assignment not yet due), overdue, or not qualified."""
    at = at or now_utc()
    today = at.date()
    ids = [m.id for m in members]
    if not ids:
        return [], {}
    held = db.session.execute(
        sa.select(UserJobFunction.user_id, DocumentAudience.document_id)
        .join(DocumentAudience, DocumentAudience.job_function_id == UserJobFunction.job_function_id)
        .where(UserJobFunction.user_id.in_(ids), UserJobFunction.valid_from <= today,
               sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > today))).all()
    required = {(uid, doc_id) for uid, doc_id in held}
    documents = list(db.session.scalars(sa.select(Document).where(
        Document.id.in_({d for _u, d in required})).order_by(Document.number)))
    # training open at `at`: assigned by then and not completed by then (a past moment sees its own state, not today's)
    open_rows = {(a.user_id, a.document_id): a for a in db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id.in_(ids), TrainingAssignment.assigned_at <= at,
        sa.or_(TrainingAssignment.status == OPEN,
               sa.and_(TrainingAssignment.status == COMPLETED, TrainingAssignment.completed_at > at)))
        .order_by(TrainingAssignment.assigned_at, TrainingAssignment.id))}
    by_id = {m.id: m for m in members}
    docs = {d.id: d for d in documents}
    cells: dict[tuple[int, int], Cell] = {}
    answers = qualify_many([(by_id[uid], docs[doc_id]) for uid, doc_id in sorted(required)], at)
    for uid, doc_id in sorted(required):
        q = answers[(uid, doc_id)]
        pending = open_rows.get((uid, doc_id))
        if q.qualified:
            cells[(uid, doc_id)] = Cell(QUALIFIED, q.trained.label if q.trained else None, q.reason)
        elif pending is not None and pending.due_on is not None and pending.due_on < today:
            cells[(uid, doc_id)] = Cell(OVERDUE, None, f"Due on {pending.due_on.isoformat()}. {q.reason}",
                                        pending.due_on)
        elif pending is not None:
            due = f"due on {pending.due_on.isoformat()}" if pending.due_on else "no due date"
            cells[(uid, doc_id)] = Cell(IN_TRAINING, None, f"Assigned, {due}. {q.reason}", pending.due_on)
        else:
            cells[(uid, doc_id)] = Cell(NOT_QUALIFIED, None, q.reason)
    return documents, cells


# --- the training record ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordLine:
    assignment: TrainingAssignment
    document: Document
    revision: Revision
    signature: sig.Signature | None


def training_record(user: User) -> list[RecordLine]:
    """Every completion of the person, newest first, with the revision and the signature that completed it."""
    rows = db.session.execute(
        sa.select(TrainingAssignment, Revision, Document, sig.Signature)
        .join(Revision, Revision.id == TrainingAssignment.revision_id)
        .join(Document, Document.id == TrainingAssignment.document_id)
        .outerjoin(sig.Signature, sig.Signature.id == TrainingAssignment.signature_id)
        .where(TrainingAssignment.user_id == user.id, TrainingAssignment.status == COMPLETED)
        .order_by(TrainingAssignment.completed_at.desc(), TrainingAssignment.id.desc())).all()
    return [RecordLine(a, d, r, s) for a, r, d, s in rows]


def departments() -> list[Department]:
    return list(db.session.scalars(sa.select(Department).order_by(Department.code)))


def job_function_codes(user_id: int, on: date | None = None) -> list[str]:
    on = on or now_utc().date()
    return list(db.session.scalars(sa.select(JobFunction.code).where(
        JobFunction.id.in_(_held_job_functions(user_id, on))).order_by(JobFunction.code)))
