"""The training matrix: which job functions must train on which subjects (`TrainingRequirement` rows), the training
each requirement creates, the matrix grid and the gap analysis.

A requirement added, tightened, removed, or reaching the end of its validity changes its holders' open training in
the same transaction as the matrix row. A subject's owner (qms for documents) sets the requirements its own page edits
through `set_job_function_audience`, and the training coordinator edits any cell through `set_requirement`.

Every function flushes and never commits (the caller wraps it in `core.db.transaction()`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason
from core.errors import NotPermitted, ValidationError
from core.org import JobFunction
from training import engine, items
from training.models import (
    COMPLETED,
    OPEN,
    RETRAIN_EVERY,
    RETRAIN_MAJOR,
    RETRAIN_POLICIES,
    SOURCE_MATRIX,
    TARGET_JOB_FUNCTION,
    TrainingAssignment,
    TrainingItem,
    TrainingRequirement,
    TrainingSubject,
    UserJobFunction,
    requirement_valid_on,
)

MAX_REASON = 2000


def _require(actor: User | None, action: str) -> None:
    if actor is None or not actor.active or not actor.can("training.manage"):
        raise NotPermitted(f"{action} needs the permission “Maintain the training matrix and assign training” "
                           f"(training.manage), which your roles do not grant.")


def _whole(field: str, value: object, label: str, minimum: int, maximum: int) -> int | None:
    """An optional int within bounds; a bool (an int to Python) or a float from a JSON body is refused."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(field, f"{label} must be a whole number from {minimum} to {maximum}.")
    return value


def check_audience(ids: Iterable[int]) -> list[int]:
    """The distinct job function ids, sorted; unknown or inactive job functions cannot be a training audience."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    found = {jf.id: jf for jf in db.session.scalars(sa.select(JobFunction).where(JobFunction.id.in_(wanted)))}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ValidationError("audience_job_function_ids", f"Unknown job function id(s): "
                                                           f"{', '.join(map(str, missing))}.")
    inactive = [found[i].code for i in wanted if not found[i].active]
    if inactive:
        raise ValidationError("audience_job_function_ids", f"Inactive job function(s) cannot be a training "
                                                           f"audience: {', '.join(inactive)}.")
    return wanted


# --- reading the matrix ----------------------------------------------------------------------------------------------


def requirements_of(subject: TrainingSubject) -> list[TrainingRequirement]:
    """Every requirement on the subject (valid or dated), in target order."""
    return list(db.session.scalars(sa.select(TrainingRequirement).where(
        TrainingRequirement.subject_id == subject.id).order_by(TrainingRequirement.target_type,
                                                              TrainingRequirement.target_id)))


def requirement(subject: TrainingSubject, job_function_id: int) -> TrainingRequirement | None:
    return db.session.scalar(sa.select(TrainingRequirement).where(
        TrainingRequirement.subject_id == subject.id, TrainingRequirement.target_type == TARGET_JOB_FUNCTION,
        TrainingRequirement.target_id == job_function_id))


def audience(subject: TrainingSubject) -> list[JobFunction]:
    """The job functions the subject's requirements name (valid now or dated), by code."""
    ids = [r.target_id for r in requirements_of(subject) if r.target_type == TARGET_JOB_FUNCTION]
    if not ids:
        return []
    return list(db.session.scalars(sa.select(JobFunction).where(JobFunction.id.in_(ids)).order_by(JobFunction.code)))


# --- changing the matrix ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequirementSettings:
    retrain: str = RETRAIN_EVERY
    recurrence_months: int | None = None
    days_allowed: int | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    reason: str | None = None


def _settings(retrain: str, recurrence_months: object, days_allowed: object, valid_from: date | None,
              valid_to: date | None, reason: str | None) -> RequirementSettings:
    if retrain not in RETRAIN_POLICIES:
        raise ValidationError("retrain", f"Retrain on must be one of: {', '.join(RETRAIN_POLICIES)}.")
    recurrence = _whole("recurrence_months", recurrence_months, "Retrain every (months)", 1, 120)
    days = _whole("days_allowed", days_allowed, "Days allowed", 0, 365)
    for name, value in (("valid_from", valid_from), ("valid_to", valid_to)):
        if value is not None and not isinstance(value, date):
            raise ValidationError(name, "Dates are written YYYY-MM-DD.")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ValidationError("valid_to", f"Valid until must be after valid from ({valid_from.isoformat()}).")
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise ValidationError("requirement_reason", f"Why it is required must be at most {MAX_REASON:,} "
                                                     f"characters.")
    return RequirementSettings(retrain, recurrence, days, valid_from, valid_to, reason)


def _apply(row: TrainingRequirement, settings: RequirementSettings) -> None:
    row.retrain, row.recurrence_months, row.days_allowed = \
        settings.retrain, settings.recurrence_months, settings.days_allowed
    row.valid_from, row.valid_to, row.reason = settings.valid_from, settings.valid_to, settings.reason


def _current(row: TrainingRequirement) -> RequirementSettings:
    return RequirementSettings(row.retrain, row.recurrence_months, row.days_allowed, row.valid_from, row.valid_to,
                               row.reason)


def set_requirement(subject: TrainingSubject, job_function_id: int, *, retrain: str = RETRAIN_EVERY,
                    recurrence_months: int | None = None, days_allowed: int | None = None,
                    valid_from: date | None = None, valid_to: date | None = None, reason: str | None = None,
                    actor: User) -> tuple[TrainingRequirement, int]:
    """Add a requirement to the training matrix, or change one (a change needs a reason for change).

    A requirement valid today assigns the subject's current item to every holder of the job function in the same
    transaction (a requirement dated ahead does when its day comes: `reconcile_dated_requirements`). Returns the
    requirement and how many people were assigned."""
    _require(actor, "Changing the training matrix")
    settings = _settings(retrain, recurrence_months, days_allowed, valid_from, valid_to, reason)
    job_function_id = check_audience([job_function_id])[0]
    row = requirement(subject, job_function_id)
    today = now_utc().date()
    if row is not None:
        if _current(row) == settings:
            raise ValidationError("retrain", "Nothing changed: the requirement already has these settings.")
        if not db.session.info.get("audit_reason"):
            raise ValidationError("reason", "A reason for change is required to change a training requirement.")
        was_valid = row.valid_on(today)
        _apply(row, settings)
        db.session.flush()
        if was_valid and not row.valid_on(today):
            requirement_removed(subject, [job_function_id])
            return row, 0
        # a stricter requirement (e.g. "every change" instead of "major only") may need training at once
        return row, requirement_added(subject, row)
    row = TrainingRequirement(subject_id=subject.id, target_type=TARGET_JOB_FUNCTION, target_id=job_function_id)
    _apply(row, settings)
    db.session.add(row)
    db.session.flush()
    return row, requirement_added(subject, row)


def remove_requirement(row: TrainingRequirement, *, actor: User) -> int:
    """Take a requirement out of the matrix (a reason is required): open matrix training its holders no longer need
    is cancelled with the reason. Returns how many assignments were cancelled."""
    _require(actor, "Changing the training matrix")
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", "A reason for change is required to remove a training requirement.")
    subject = row.subject
    job_function_id = row.target_id
    db.session.delete(row)
    db.session.flush()
    return requirement_removed(subject, [job_function_id])


def set_job_function_audience(subject: TrainingSubject, job_function_ids: Iterable[int]) -> tuple[int, int]:
    """The owner's page sets which job functions must train on its subject (e.g. a document's training audience):
    new job functions get a requirement with the default settings and their holders are assigned the current item;
    job functions left out lose theirs and their open matrix training. The caller checks who may do this. Returns
    (assigned, cancelled)."""
    wanted = set(check_audience(job_function_ids))
    current = {r.target_id: r for r in requirements_of(subject) if r.target_type == TARGET_JOB_FUNCTION}
    removed = sorted(current.keys() - wanted)
    with db.session.no_autoflush:
        for job_function_id in removed:
            db.session.delete(current[job_function_id])
        added = [TrainingRequirement(subject_id=subject.id, target_type=TARGET_JOB_FUNCTION, target_id=i,
                                     retrain=RETRAIN_EVERY) for i in sorted(wanted - current.keys())]
        db.session.add_all(added)
    db.session.flush()
    assigned = sum(requirement_added(subject, row) for row in added)
    cancelled = requirement_removed(subject, removed) if removed else 0
    return assigned, cancelled


def requirement_added(subject: TrainingSubject, row: TrainingRequirement) -> int:
    """The holders of the requirement's job function train on the subject's current item, due within the days
    allowed (or by its effective date, if later). Nothing happens for a requirement not valid today."""
    today = now_utc().date()
    if not row.valid_on(today):
        return 0
    target = items.current_item(subject)
    if target is None:
        return 0
    users = engine.holders([row.target_id])
    have = set(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
        TrainingAssignment.item_id == target.id, TrainingAssignment.status.in_([OPEN, COMPLETED]))))
    if row.retrain == RETRAIN_MAJOR and not target.major_change:
        # training on an earlier item of the same major version still counts (unless another of the person's job
        # functions requires every change)
        every = [r.target_id for r in engine.requirements_on(subject.id, today)
                 if r.target_type == TARGET_JOB_FUNCTION and r.retrain != RETRAIN_MAJOR]
        strict = set(engine.holders(every)) if every else set()
        earlier = sa.select(TrainingItem.id).where(TrainingItem.subject_id == subject.id,
                                                   TrainingItem.version_major == target.version_major,
                                                   TrainingItem.version_minor < target.version_minor)
        have |= set(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
            TrainingAssignment.item_id.in_(earlier), TrainingAssignment.status == COMPLETED))) - strict
    cycles = engine.latest_cycles(users, target.id)
    days = row.days_allowed if row.days_allowed is not None else subject.days_allowed
    due = today + timedelta(days=days)
    if target.effective_on is not None and target.effective_on > due:
        due = target.effective_on
    code = db.session.get(JobFunction, row.target_id).code
    rows = [{"user_id": uid, "subject_id": subject.id, "item_id": target.id,
             "cycle": cycles[uid][0] + 1 if uid in cycles else 0, "source_type": SOURCE_MATRIX,
             "source_id": row.id, "due_on": due,
             "assigned_reason": f"{subject.key} required for job function {code}"}
            for uid in users if uid not in have]
    return engine.create_assignments(rows)


def requirement_removed(subject: TrainingSubject, job_function_ids: list[int]) -> int:
    """Cancel the open matrix training on this subject of the holders of the removed job functions, except those
    another of their job functions still requires it of (set-based: one statement per chunk of people)."""
    codes = ", ".join(db.session.scalars(sa.select(JobFunction.code).where(JobFunction.id.in_(job_function_ids))))
    still = set(engine.holders([r.target_id for r in engine.requirements_on(subject.id)
                                if r.target_type == TARGET_JOB_FUNCTION and r.target_id not in job_function_ids]))
    affected = [uid for uid in engine.holders(job_function_ids) if uid not in still]
    return engine.cancel_open_matrix_training(
        subject.id, affected, reason=f"{subject.key} no longer required for {codes} (training matrix changed)")


def reconcile_dated_requirements(today: date | None = None, *, days: int = 7) -> tuple[int, int, int]:
    """Apply requirements whose validity started or ended in the last `days` days (today included): a requirement
    now valid assigns its holders, one no longer valid cancels their open matrix training. Idempotent, so a daily run
    that misses a day catches up. Returns (requirements, assigned, cancelled)."""
    today = today or now_utc().date()
    since = today - timedelta(days=days - 1)
    rows = list(db.session.scalars(sa.select(TrainingRequirement).where(sa.or_(
        TrainingRequirement.valid_from.between(since, today), TrainingRequirement.valid_to.between(since, today)))
        .order_by(TrainingRequirement.id)))
    if rows:
        default_reason("Training requirements dated ahead took effect or ended")
    assigned = cancelled = 0
    for row in rows:
        if row.valid_on(today):
            assigned += requirement_added(row.subject, row)
        else:
            cancelled += requirement_removed(row.subject, [row.target_id])
    return len(rows), assigned, cancelled


# --- the matrix grid and the gap analysis ----------------------------------------------------------------------------


def grid(*, department_id: int | None = None, category: str | None = None, query: str | None = None,
         limit: int = 200) -> tuple[list[TrainingSubject], list[JobFunction],
                                     dict[tuple[int, int], TrainingRequirement]]:
    """Subjects (rows), active job functions (columns) and the requirement in each cell."""
    stmt = sa.select(TrainingSubject).order_by(TrainingSubject.key)
    if department_id:
        stmt = stmt.where(TrainingSubject.department_id == department_id)
    if category:
        stmt = stmt.where(TrainingSubject.category == category)
    if query:
        like = f"%{query.strip()}%"
        stmt = stmt.where(sa.or_(TrainingSubject.key.ilike(like), TrainingSubject.title.ilike(like)))
    subjects = list(db.session.scalars(stmt.limit(limit)))
    functions = list(db.session.scalars(sa.select(JobFunction).where(JobFunction.active.is_(True))
                                        .order_by(JobFunction.code)))
    cells = {(r.subject_id, r.target_id): r for r in db.session.scalars(
        sa.select(TrainingRequirement).where(TrainingRequirement.subject_id.in_([s.id for s in subjects]),
                                             TrainingRequirement.target_type == TARGET_JOB_FUNCTION))}
    return subjects, functions, cells


def categories() -> list[str]:
    return [c for c in db.session.scalars(sa.select(TrainingSubject.category).distinct()
                                          .order_by(TrainingSubject.category)) if c]


def holders_count(job_function_ids: Iterable[int]) -> int:
    return len(engine.holders(job_function_ids))


@dataclass
class Gaps:
    functions_without_requirements: list[JobFunction]
    requirements_not_effective: list[tuple[TrainingSubject, JobFunction, str]]  # (subject, job function, why)
    people_without_function: list[User]
    overdue: list[tuple[User, int, date]]  # (person, overdue assignments, oldest due date)


def gap_analysis(today: date | None = None) -> Gaps:
    today = today or now_utc().date()
    required = sa.select(TrainingRequirement.target_id).where(TrainingRequirement.target_type == TARGET_JOB_FUNCTION,
                                                              requirement_valid_on(today))
    functions = list(db.session.scalars(sa.select(JobFunction).where(
        JobFunction.active.is_(True), ~JobFunction.id.in_(required)).order_by(JobFunction.code)))
    in_use = sa.and_(TrainingItem.superseded_at.is_(None), TrainingItem.retired_at.is_(None))
    effective = set(db.session.scalars(sa.select(TrainingItem.subject_id).where(
        in_use, TrainingItem.effective_at.is_not(None))))
    published = set(db.session.scalars(sa.select(TrainingItem.subject_id).where(in_use)))
    not_effective = []
    for subject, function in db.session.execute(
            sa.select(TrainingSubject, JobFunction)
            .select_from(TrainingRequirement)
            .join(TrainingSubject, TrainingSubject.id == TrainingRequirement.subject_id)
            .join(JobFunction, JobFunction.id == TrainingRequirement.target_id)
            .where(TrainingRequirement.target_type == TARGET_JOB_FUNCTION, requirement_valid_on(today))
            .order_by(TrainingSubject.key, JobFunction.code)):
        if subject.id not in effective:
            why = "approved, not yet effective" if subject.id in published else "no effective revision"
            not_effective.append((subject, function, why))
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
