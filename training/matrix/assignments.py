"""Training coordination: manual and bulk assignment, and periodic retraining.

Use cases flush, never commit; views, commands and jobs wrap them in core.db.transaction(). Assignments are written by
the training engine (with their audit rows); this module decides who needs what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from core.auth.models import User
from core.clock import add_months, now_utc
from core.db import db, default_reason
from core.errors import NotPermitted, ValidationError
from core.org import Department, JobFunction, Site
from training import engine, items
from training.models import (
    COMPLETED,
    OPEN,
    SOURCE_MANUAL,
    SOURCE_RECURRENCE,
    TARGET_JOB_FUNCTION,
    TrainingAssignment,
    TrainingItem,
    TrainingRequirement,
    TrainingSubject,
    requirement_valid_on,
)

MAX_BULK = 20_000


def _require(actor: User | None) -> None:
    if actor is None or not actor.active or not actor.can("training.manage"):
        raise NotPermitted("Assigning training needs the permission 'training.manage' (training coordinator).")


def find_subject(key: str, field_name: str = "document") -> TrainingSubject:
    """The subject a person typed (e.g. a document number), whatever its case; refused naming the field."""
    key = (key or "").strip()
    subject = items.find_subject(key) if key else None
    if subject is None:
        raise ValidationError(field_name, f"No document numbered {key.upper()!r}." if key else
                              "Document number is required.")
    return subject


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
    item: TrainingItem
    created: int
    already_open: list[str]  # usernames who already had open training on the item


def assign_manually(subject: TrainingSubject, selection: Selection, *, due_on: date | None, reason: str,
                    actor: User) -> AssignResult:
    """A coordinator assigns the subject's current item to the selected people with a due date and a reason.

    People with open training on that item are left as they are (and listed); people who completed it are assigned
    again (retraining, the next cycle). One transaction: everyone is assigned, or nobody."""
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
    item = items.current_item(subject)
    if item is None:
        raise ValidationError("document", f"{subject.key} has no approved or effective {subject.version_noun} to "
                                          f"train on.")
    people = select_people(selection)
    default_reason(f"Assigned by hand: {reason}")
    created, already = engine.assign_people(item, [u.id for u in people], due_on=due_on, source_type=SOURCE_MANUAL,
                                            source_id=actor.id, reason=reason)
    names = {u.id: u.username for u in people}
    return AssignResult(item, created, sorted((names[uid] for uid in already), key=lambda n: n))


# --- periodic retraining -----------------------------------------------------------------------------------------


def retraining_due(today: date | None = None) -> int:
    """Assign periodic retraining that falls due: for each valid requirement with a retraining interval, each holder
    whose last completion on the subject lapses within the training window (the requirement's days allowed, else the
    subject's default) and who has no open training on it gets the current item again, due when the last training
    lapses. Idempotent: run daily. Returns how many were assigned."""
    today = today or now_utc().date()
    requirements = db.session.execute(
        sa.select(TrainingRequirement, TrainingSubject)
        .join(TrainingSubject, TrainingSubject.id == TrainingRequirement.subject_id)
        .where(TrainingRequirement.recurrence_months.is_not(None),
               TrainingRequirement.target_type == TARGET_JOB_FUNCTION, requirement_valid_on(today))
        .order_by(TrainingRequirement.id)).all()
    default_reason("Periodic retraining due")
    created = 0
    for requirement, subject in requirements:
        item = items.current_item(subject)
        if item is None:
            continue
        holders = engine.holders([requirement.target_id], today)
        if not holders:
            continue
        last = dict(db.session.execute(
            sa.select(TrainingAssignment.user_id, sa.func.max(TrainingAssignment.completed_at))
            .where(TrainingAssignment.subject_id == subject.id, TrainingAssignment.status == COMPLETED,
                   TrainingAssignment.user_id.in_(holders))
            .group_by(TrainingAssignment.user_id)).all())
        busy = set(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
            TrainingAssignment.subject_id == subject.id, TrainingAssignment.status == OPEN,
            TrainingAssignment.user_id.in_(holders))))
        window = requirement.days_allowed if requirement.days_allowed is not None else subject.days_allowed
        due_people = {}
        for uid, completed_at in last.items():
            if uid in busy or completed_at is None:
                continue
            lapses = add_months(completed_at.date(), requirement.recurrence_months)
            if lapses - timedelta(days=window) <= today:
                due_people[uid] = lapses
        if not due_people:
            continue
        cycles = engine.latest_cycles(list(due_people), item.id)
        rows = [{"user_id": uid, "subject_id": subject.id, "item_id": item.id,
                 "cycle": cycles[uid][0] + 1 if uid in cycles else 0, "source_type": SOURCE_RECURRENCE,
                 "source_id": requirement.id, "due_on": max(lapses, today),
                 "assigned_reason": f"Retraining every {requirement.recurrence_months} months"}
                for uid, lapses in sorted(due_people.items())]
        created += engine.create_assignments(rows)
    return created
