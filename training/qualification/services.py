"""Qualification: is a person trained on the version of a subject (e.g. the revision of a document) that governs their
work, now or at any past time?

Answered from the history, never from a flag: items carry when they were published (approved), took effect, were
superseded or retired; completions carry their signature time; job functions held carry their dates; requirements
are read as they stood then from their audited versions. So "was Otto qualified on SOP-QA-001 on 3 March at 10:00,
and on which revision?" has one answer, the same today and in five years. Only training tables are read.

The rule:
- The item that governs at time T is the one in force (took effect at or before T, not yet superseded or retired).
  Before a subject's first item takes effect, its published item governs (people train ahead of it).
- A person is qualified when they completed (signed at or before T) the governing item, or trained ahead on its
  published successor (before that takes effect).
  When every requirement of their job functions on the subject says "major changes only", training on an earlier
  minor version of the same major version counts too (2.0 counts for 2.1, never for 3.0).
- When a requirement sets a retraining interval, the qualifying completion must be more recent than that interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import sqlalchemy as sa

from core.auth.models import User
from core.clock import add_months, now_utc
from core.db import db
from core.org import Department, JobFunction
from signatures import models as sig
from training.models import (
    COMPLETED,
    OPEN,
    RETRAIN_EVERY,
    RETRAIN_MAJOR,
    TARGET_JOB_FUNCTION,
    TrainingAssignment,
    TrainingItem,
    TrainingRequirement,
    TrainingSubject,
    UserJobFunction,
    requirement_valid_on,
)

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
    subject: TrainingSubject
    at: datetime
    qualified: bool
    required: TrainingItem | None  # the item governing at `at` (None: the subject had none)
    trained: TrainingItem | None  # the item whose completion qualifies (or the newest completed one)
    completed_at: datetime | None
    reason: str

    def as_json(self) -> dict:
        return {
            "user": self.user.username,
            "name": self.user.full_name,
            "document": self.subject.key,
            "title": self.subject.title,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "qualified": self.qualified,
            "current_revision": self.required.version_label if self.required else None,
            "trained_revision": self.trained.version_label if self.trained else None,
            "completed_at": self.completed_at.isoformat().replace("+00:00", "Z") if self.completed_at else None,
            "reason": self.reason,
        }


def _order(item: TrainingItem) -> tuple[int, int]:
    return item.version_major, item.version_minor


def _governs(versions: list[TrainingItem], at: datetime) -> TrainingItem | None:
    """Of one subject's items: the one in force at `at`; before the first is in force, the newest published."""
    newest_first = sorted(versions, key=_order, reverse=True)
    for i in newest_first:
        if i.effective_at is not None and i.effective_at <= at and (i.superseded_at is None or i.superseded_at > at) \
                and (i.retired_at is None or i.retired_at > at):
            return i
    if any(i.effective_at is not None and i.effective_at <= at for i in versions):
        return None  # superseded without successor or retired: nothing governs any more
    return next((i for i in newest_first if i.published_at <= at), None)


def _items_of(subject_ids: list[int]) -> dict[int, list[TrainingItem]]:
    by_subject: dict[int, list[TrainingItem]] = {s: [] for s in subject_ids}
    for start in range(0, len(subject_ids), 1000):
        for item in db.session.scalars(sa.select(TrainingItem).where(
                TrainingItem.subject_id.in_(subject_ids[start:start + 1000]))):
            by_subject[item.subject_id].append(item)
    return by_subject


def governing_item(subject_id: int, at: datetime) -> TrainingItem | None:
    """The item in force at `at`; before the first one is in force, the newest published one."""
    return _governs(_items_of([subject_id])[subject_id], at)


def _held_job_functions(user_id: int, on: date) -> list[int]:
    return list(db.session.scalars(sa.select(UserJobFunction.job_function_id).where(
        UserJobFunction.user_id == user_id, UserJobFunction.valid_from <= on,
        sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))))


@dataclass(frozen=True)
class RequirementThen:
    """A training requirement as it stood at a moment (from its audited history)."""

    subject_id: int
    job_function_id: int
    retrain: str
    recurrence_months: int | None


def requirements_at(subject_ids: list[int], at: datetime) -> dict[int, list[RequirementThen]]:
    """subject id -> the training matrix requirements on it as they stood at `at`, read from the audit trail
    (version rows), so that changing the matrix today never changes an answer about the past. A requirement counts
    when its version then existed and was valid on that day.

    A requirement's subject and target never change. Its versions recorded before migration 0011 name the document
    and job function in the retired columns `document_id` and `job_function_id` instead: their subject is the one the
    requirement's later versions name (the migration recorded one for every requirement, removed ones included)."""
    from sqlalchemy_continuum import version_class

    from core.audit import AuditTransaction

    if not subject_ids:
        return {}
    v = version_class(TrainingRequirement)
    named = (sa.select(v.id.label("id"), v.subject_id.label("subject_id"))
             .where(v.subject_id.in_(subject_ids)).distinct().subquery())
    latest = (sa.select(v.id, sa.func.max(v.transaction_id).label("tx"))
              .join(AuditTransaction, AuditTransaction.id == v.transaction_id)
              .where(AuditTransaction.issued_at <= at, v.id.in_(sa.select(named.c.id)))
              .group_by(v.id).subquery())
    day = at.astimezone(UTC).date()
    found: dict[int, list[RequirementThen]] = {}
    rows = db.session.execute(
        sa.select(named.c.subject_id, v.target_type, v.target_id, v.job_function_id, v.retrain, v.recurrence_months,
                  v.valid_from, v.valid_to, v.operation_type)
        .join(latest, sa.and_(latest.c.id == v.id, latest.c.tx == v.transaction_id))
        .join(named, named.c.id == v.id))
    for row in rows:
        if row.operation_type == 2:  # removed from the matrix by then
            continue
        if (row.target_type or TARGET_JOB_FUNCTION) != TARGET_JOB_FUNCTION:
            continue
        if (row.valid_from is not None and row.valid_from > day) or (row.valid_to is not None and row.valid_to <= day):
            continue
        job_function_id = row.target_id if row.target_id is not None else row.job_function_id
        found.setdefault(row.subject_id, []).append(RequirementThen(
            row.subject_id, job_function_id, row.retrain or RETRAIN_EVERY, row.recurrence_months))
    return found


def requirements_for(user_id: int, subject_id: int, on: date | datetime) -> list[RequirementThen]:
    """The training matrix cells that required this subject of the person then (through job functions held that
    day, with the matrix as it stood)."""
    at = on if isinstance(on, datetime) else _end_of(on)
    held = set(_held_job_functions(user_id, at.astimezone(UTC).date()))
    if not held:
        return []
    return [r for r in requirements_at([subject_id], at).get(subject_id, []) if r.job_function_id in held]


def _policy(requirements: list[RequirementThen]) -> tuple[bool, int | None]:
    """(major changes only?, strictest retraining interval in months)."""
    major_only = bool(requirements) and all(r.retrain == RETRAIN_MAJOR for r in requirements)
    intervals = [r.recurrence_months for r in requirements if r.recurrence_months]
    return major_only, (min(intervals) if intervals else None)


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def _evaluate(user: User, subject: TrainingSubject, at: datetime, required: TrainingItem | None,
              requirements: list[RequirementThen],
              completions: list[tuple[datetime, TrainingItem]]) -> Qualification:
    """The rule (module docstring), on facts already loaded; `completions` newest first, none after `at`."""
    newest = completions[0] if completions else None
    noun = subject.version_noun

    def result(ok: bool, trained: TrainingItem | None, when: datetime | None, reason: str) -> Qualification:
        return Qualification(user, subject, at, ok, required, trained, when, reason)

    if required is None:
        return result(False, newest[1] if newest else None, newest[0] if newest else None,
                      f"{subject.key} had no approved or effective {noun} at that time.")
    major_only, months = _policy(requirements)
    counting = [(when, item) for when, item in completions
                if item.id == required.id
                or (major_only and item.version_major == required.version_major
                    and item.version_minor <= required.version_minor)
                # trained ahead on the published successor, before it takes effect
                or (_order(item) > _order(required) and item.published_at <= at
                    and (item.retired_at is None or item.retired_at > at))]
    if not counting:
        if newest:
            return result(False, newest[1], newest[0],
                          f"Trained on {noun} {newest[1].version_label}, not on {noun} {required.version_label}.")
        return result(False, None, None, f"Not trained on {subject.key} {noun} {required.version_label}.")
    when, item = counting[0]
    if months:
        lapses = _end_of(add_months(when.date(), months))
        if lapses < at:
            return result(False, item, when, f"Periodic retraining (every {months} months) was due on "
                                             f"{add_months(when.date(), months).isoformat()}.")
    return result(True, item, when, f"Trained on {noun} {item.version_label}.")


def _completions(user_ids: list[int], subject_ids: list[int], at: datetime
                 ) -> dict[tuple[int, int], list[tuple[datetime, TrainingItem]]]:
    found: dict[tuple[int, int], list[tuple[datetime, TrainingItem]]] = {}
    for uid, when, item in db.session.execute(
            sa.select(TrainingAssignment.user_id, TrainingAssignment.completed_at, TrainingItem)
            .join(TrainingItem, TrainingItem.id == TrainingAssignment.item_id)
            .where(TrainingAssignment.user_id.in_(user_ids), TrainingAssignment.subject_id.in_(subject_ids),
                   TrainingAssignment.status == COMPLETED, TrainingAssignment.completed_at <= at)
            .order_by(TrainingAssignment.completed_at.desc(), TrainingAssignment.id.desc())):
        found.setdefault((uid, item.subject_id), []).append((when, item))
    return found


def qualification(user: User, subject: TrainingSubject, at: datetime | None = None) -> Qualification:
    """Was `user` qualified on `subject` at `at` (default now)? The reference for `qualify_many`."""
    at = at or now_utc()
    return _evaluate(user, subject, at, governing_item(subject.id, at),
                     requirements_for(user.id, subject.id, at),
                     _completions([user.id], [subject.id], at).get((user.id, subject.id), []))


def qualify_many(pairs: list[tuple[User, TrainingSubject]], at: datetime | None = None
                 ) -> dict[tuple[int, int], Qualification]:
    """`qualification()` for many (person, subject) pairs at once, in a handful of queries whatever their number
    (a department's matrix is thousands of cells). Same rule, same answers: (user id, subject id) -> answer."""
    at = at or now_utc()
    if not pairs:
        return {}
    user_ids = sorted({u.id for u, _s in pairs})
    subject_ids = sorted({s.id for _u, s in pairs})
    governing = {subject_id: _governs(versions, at) for subject_id, versions in _items_of(subject_ids).items()}
    on = at.astimezone(UTC).date()
    held: dict[int, set[int]] = {}
    for start in range(0, len(user_ids), 5000):
        for uid, jf in db.session.execute(sa.select(UserJobFunction.user_id, UserJobFunction.job_function_id).where(
                UserJobFunction.user_id.in_(user_ids[start:start + 5000]), UserJobFunction.valid_from <= on,
                sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))):
            held.setdefault(uid, set()).add(jf)
    requirements = requirements_at(subject_ids, at)
    completions: dict[tuple[int, int], list[tuple[datetime, TrainingItem]]] = {}
    for start in range(0, len(user_ids), 1000):
        completions.update(_completions(user_ids[start:start + 1000], subject_ids, at))
    answers = {}
    for user, subject in pairs:
        mine = held.get(user.id, set())
        answers[(user.id, subject.id)] = _evaluate(
            user, subject, at, governing[subject.id],
            [r for r in requirements.get(subject.id, []) if r.job_function_id in mine],
            completions.get((user.id, subject.id), []))
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


def team_matrix(members: list[User], at: datetime | None = None
                ) -> tuple[list[TrainingSubject], dict[tuple[int, int], Cell]]:
    """The subjects the members' job functions require (columns) and a cell per (user, subject) that is required:
    qualified, in training (open assignment not yet due), overdue, or not qualified."""
    at = at or now_utc()
    today = at.date()
    ids = [m.id for m in members]
    if not ids:
        return [], {}
    held = db.session.execute(
        sa.select(UserJobFunction.user_id, TrainingRequirement.subject_id)
        .join(TrainingRequirement, sa.and_(TrainingRequirement.target_type == TARGET_JOB_FUNCTION,
                                           TrainingRequirement.target_id == UserJobFunction.job_function_id))
        .where(UserJobFunction.user_id.in_(ids), UserJobFunction.valid_from <= today,
               sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > today),
               requirement_valid_on(today))).all()
    required = {(uid, subject_id) for uid, subject_id in held}
    subjects = list(db.session.scalars(sa.select(TrainingSubject).where(
        TrainingSubject.id.in_({s for _u, s in required})).order_by(TrainingSubject.key)))
    # training open at `at`: assigned by then and not completed by then (a past moment sees its own state, not today's)
    open_rows = {(a.user_id, a.subject_id): a for a in db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id.in_(ids), TrainingAssignment.assigned_at <= at,
        sa.or_(TrainingAssignment.status == OPEN,
               sa.and_(TrainingAssignment.status == COMPLETED, TrainingAssignment.completed_at > at)))
        .order_by(TrainingAssignment.assigned_at, TrainingAssignment.id))}
    by_id = {m.id: m for m in members}
    by_subject = {s.id: s for s in subjects}
    cells: dict[tuple[int, int], Cell] = {}
    answers = qualify_many([(by_id[uid], by_subject[s]) for uid, s in sorted(required)], at)
    for uid, subject_id in sorted(required):
        q = answers[(uid, subject_id)]
        pending = open_rows.get((uid, subject_id))
        if q.qualified:
            cells[(uid, subject_id)] = Cell(QUALIFIED, q.trained.version_label if q.trained else None, q.reason)
        elif pending is not None and pending.due_on is not None and pending.due_on < today:
            cells[(uid, subject_id)] = Cell(OVERDUE, None, f"Due on {pending.due_on.isoformat()}. {q.reason}",
                                            pending.due_on)
        elif pending is not None:
            due = f"due on {pending.due_on.isoformat()}" if pending.due_on else "no due date"
            cells[(uid, subject_id)] = Cell(IN_TRAINING, None, f"Assigned, {due}. {q.reason}", pending.due_on)
        else:
            cells[(uid, subject_id)] = Cell(NOT_QUALIFIED, None, q.reason)
    return subjects, cells


# --- the training record ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordLine:
    assignment: TrainingAssignment
    subject: TrainingSubject
    item: TrainingItem
    signature: sig.Signature | None


def training_record(user: User) -> list[RecordLine]:
    """Every completion of the person, newest first, with the item and the signature that completed it."""
    rows = db.session.execute(
        sa.select(TrainingAssignment, TrainingItem, TrainingSubject, sig.Signature)
        .join(TrainingItem, TrainingItem.id == TrainingAssignment.item_id)
        .join(TrainingSubject, TrainingSubject.id == TrainingAssignment.subject_id)
        .outerjoin(sig.Signature, sig.Signature.id == TrainingAssignment.signature_id)
        .where(TrainingAssignment.user_id == user.id, TrainingAssignment.status == COMPLETED)
        .order_by(TrainingAssignment.completed_at.desc(), TrainingAssignment.id.desc())).all()
    return [RecordLine(a, s, i, g) for a, i, s, g in rows]


def departments() -> list[Department]:
    return list(db.session.scalars(sa.select(Department).order_by(Department.code)))


def job_function_codes(user_id: int, on: date | None = None) -> list[str]:
    on = on or now_utc().date()
    return list(db.session.scalars(sa.select(JobFunction.code).where(
        JobFunction.id.in_(_held_job_functions(user_id, on))).order_by(JobFunction.code)))
