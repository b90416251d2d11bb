"""The assignment engine: computes which (person, item) assignments must exist for a trigger and creates the
missing ones, idempotently, inside the caller's transaction.

It reads only training tables and takes ids and values, never qms or lms objects (training sits below them). The
requirements of the training matrix (`TrainingRequirement`) say who trains on a subject; the engine resolves their
targets to people. Assignments are written through core.bulk, one statement per chunk with their audit (version)
rows, so that an item whose audience holds thousands of people is assigned in about a second, in the same transaction
as the approval that published it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import sqlalchemy as sa

from core import bulk
from core.auth.models import User
from core.clock import now_utc
from core.db import db
from training.models import (
    CANCELLED,
    COMPLETED,
    OPEN,
    RETRAIN_MAJOR,
    SOURCE_IMPORT,
    SOURCE_JOB_FUNCTION,
    SOURCE_MATRIX,
    SOURCE_RECURRENCE,
    SOURCE_REVISION_APPROVAL,
    SUPERSEDED,
    TARGET_JOB_FUNCTION,
    TrainingAssignment,
    TrainingItem,
    TrainingRequirement,
    TrainingSubject,
    UserJobFunction,
    requirement_valid_on,
)


def holders(job_function_ids: Iterable[int], on: date | None = None, *,
            as_select: bool = False) -> list[int] | sa.Select:
    """Ids of active users holding any of the job functions on day `on` (default today), in id order.

    With `as_select`, the query instead (one column, `user_id`), for set-based writes such as assign_for_item. It
    reads the tables, not the ORM entities: ten thousand ids need no ORM loading."""
    ids = list(set(job_function_ids))
    on = on or now_utc().date()
    user, held = User.__table__.c, UserJobFunction.__table__.c
    holding = sa.select(held.user_id).where(held.job_function_id.in_(ids), held.valid_from <= on,
                                            sa.or_(held.valid_to.is_(None), held.valid_to > on))
    query = (sa.select(user.id.label("user_id")).where(user.active.is_(True), user.id.in_(holding))
             .order_by(user.id))
    if as_select:
        return query
    return list(db.session.scalars(query)) if ids else []


def requirements_on(subject_id: int, on: date | None = None) -> list[TrainingRequirement]:
    """The requirements on a subject valid on day `on` (default today)."""
    on = on or now_utc().date()
    return list(db.session.scalars(sa.select(TrainingRequirement).where(
        TrainingRequirement.subject_id == subject_id, requirement_valid_on(on)).order_by(TrainingRequirement.id)))


def retraining_job_functions(subject_id: int, *, major_change: bool, on: date | None = None) -> list[int]:
    """The job functions whose holders train on a new item of the subject: every requirement's for a major change,
    only those set to "every change" for a minor one."""
    return sorted({r.target_id for r in requirements_on(subject_id, on)
                   if r.target_type == TARGET_JOB_FUNCTION and (major_change or r.retrain != RETRAIN_MAJOR)})


def major_only_holders(subject_id: int, on: date | None = None) -> list[int]:
    """People for whom every requirement on this subject says "major changes only"."""
    requirements = [r for r in requirements_on(subject_id, on) if r.target_type == TARGET_JOB_FUNCTION]
    major = [r.target_id for r in requirements if r.retrain == RETRAIN_MAJOR]
    every = [r.target_id for r in requirements if r.retrain != RETRAIN_MAJOR]
    if not major:
        return []
    return sorted(set(holders(major, on)) - set(holders(every, on) if every else []))


def assign_for_item(item: TrainingItem, *, due_on: date | None, source_type: str = SOURCE_REVISION_APPROVAL,
                    source_id: int | None = None) -> int:
    """Assign a newly published item to every active holder of the job functions its subject's requirements name
    (for a minor change, only those requiring every change) who does not have it yet.

    Returns how many assignments were created (0 when run again: idempotent). A concurrent duplicate is impossible:
    (user, item, cycle) is unique in the database, so a racing transaction fails and rolls back whole.

    The rows are selected and written by the database in one INSERT ... SELECT (with their version rows): the
    audience is never loaded into Python, however large."""
    job_function_ids = retraining_job_functions(item.subject_id, major_change=item.major_change)
    if not job_function_ids:
        return 0
    assignment = TrainingAssignment.__table__.c
    values = {"subject_id": item.subject_id, "item_id": item.id, "status": OPEN, "source_type": source_type,
              "source_id": source_id if source_id is not None else item.id, "due_on": due_on,
              "assigned_at": now_utc()}
    assigned = sa.select(assignment.user_id).where(assignment.item_id == item.id)
    rows = (holders(job_function_ids, as_select=True)
            .add_columns(*[sa.literal(v, assignment[k].type).label(k) for k, v in values.items()])
            .where(User.__table__.c.id.not_in(assigned)))
    return len(bulk.bulk_insert(TrainingAssignment, rows))


def supersede_open_assignments(*, item_ids: Iterable[int], reason: str, policy: str = "supersede",
                               keep_user_ids: Iterable[int] = ()) -> int:
    """Close the open assignments of items no longer in force (policy "supersede", the default) or leave them open
    ("keep"). Completed training is never touched, nor open training of `keep_user_ids` (people for whom the replaced
    item still counts, e.g. "major changes only" after a minor change). Returns how many closed."""
    ids = list(item_ids)
    if policy == "keep" or not ids:
        return 0
    where = sa.and_(TrainingAssignment.item_id.in_(ids), TrainingAssignment.status == OPEN)
    keep = sorted(set(keep_user_ids))
    if keep:
        where = sa.and_(where, TrainingAssignment.user_id.not_in(keep))
    return bulk.bulk_update(TrainingAssignment, where, {"status": SUPERSEDED, "closed_reason": reason})


def create_assignments(rows: list[dict]) -> int:
    """Write prepared assignment rows (user_id, subject_id, item_id, cycle, source_type, source_id, due_on,
    assigned_reason) with their audit rows. Callers decide who needs what; the unique (user, item, cycle) constraint
    refuses a concurrent duplicate, rolling the whole transaction back."""
    if not rows:
        return 0
    now = now_utc()
    full = [{"status": OPEN, "assigned_at": now, "cycle": 0, "source_id": None, "due_on": None,
             "assigned_reason": None, **row} for row in rows]
    bulk.bulk_insert(TrainingAssignment, full)
    return len(full)


def assign_people(item: TrainingItem, user_ids: Iterable[int], *, due_on: date | None, source_type: str,
                  source_id: int | None, reason: str | None) -> tuple[int, list[int]]:
    """Assign the item to these people: those with open training on it are left as they are (returned), those who
    completed it are assigned again (retraining, the next cycle). Returns (created, user ids left as they were)."""
    ids = sorted(set(user_ids))
    cycles = latest_cycles(ids, item.id)
    already = [uid for uid in ids if uid in cycles and cycles[uid][1] == OPEN]
    rows = [{"user_id": uid, "subject_id": item.subject_id, "item_id": item.id,
             "cycle": cycles[uid][0] + 1 if uid in cycles else 0, "source_type": source_type,
             "source_id": source_id, "due_on": due_on, "assigned_reason": reason}
            for uid in ids if uid not in already]
    return create_assignments(rows), already


def latest_cycles(user_ids: Iterable[int], item_id: int) -> dict[int, tuple[int, str]]:
    """user id -> (highest cycle, its status) of their assignments on the item."""
    ids = list(set(user_ids))
    result: dict[int, tuple[int, str]] = {}
    for start in range(0, len(ids), 5000):
        for uid, cycle, status in db.session.execute(
                sa.select(TrainingAssignment.user_id, TrainingAssignment.cycle, TrainingAssignment.status)
                .where(TrainingAssignment.item_id == item_id,
                       TrainingAssignment.user_id.in_(ids[start:start + 5000]))):
            if uid not in result or cycle > result[uid][0]:
                result[uid] = (cycle, status)
    return result


# --- people joining and leaving job functions -------------------------------------------------------------------------

# What a holder of some job functions must be trained on now, per subject: (item id, due date, counting item ids);
# `counting` are other items whose completed training already satisfies it (e.g. 1.0 for 1.1 under "major changes
# only").
Target = tuple[int, date | None, tuple[int, ...]]


def targets_for(job_function_ids: Iterable[int], on: date | None = None) -> dict[int, Target]:
    """subject id -> what a holder of these job functions must be trained on: for each subject whose valid
    requirements include one of them, its newest item in use, due by its effective date or the days allowed from
    `on` (the requirement's, else the subject's default), whichever is later; and, when every one of those
    requirements says "major changes only", the earlier items of the same major version whose completed training
    still counts."""
    ids = sorted(set(job_function_ids))
    on = on or now_utc().date()
    if not ids:
        return {}
    requirements: dict[int, int | None] = {}
    every: set[int] = set()
    for subject_id, days, retrain in db.session.execute(
            sa.select(TrainingRequirement.subject_id, TrainingRequirement.days_allowed, TrainingRequirement.retrain)
            .where(TrainingRequirement.target_type == TARGET_JOB_FUNCTION, TrainingRequirement.target_id.in_(ids),
                   requirement_valid_on(on))):
        # several job functions requiring one subject: the shortest window given applies
        if subject_id not in requirements or (days is not None and (requirements[subject_id] is None
                                                                    or days < requirements[subject_id])):
            requirements[subject_id] = days
        if retrain != RETRAIN_MAJOR:
            every.add(subject_id)
    if not requirements:
        return {}
    rows = db.session.execute(
        sa.select(TrainingItem.subject_id, TrainingItem.id, TrainingItem.effective_on, TrainingSubject.days_allowed,
                  TrainingItem.version_major, TrainingItem.version_minor, TrainingItem.superseded_at,
                  TrainingItem.retired_at)
        .join(TrainingSubject, TrainingSubject.id == TrainingItem.subject_id)
        .where(TrainingItem.subject_id.in_(list(requirements)))
        .order_by(TrainingItem.subject_id, TrainingItem.version_major, TrainingItem.version_minor)).all()
    newest: dict[int, tuple[int, date | None, int, int]] = {}
    for subject_id, item_id, effective_on, window, major, minor, superseded_at, retired_at in rows:
        if superseded_at is not None or retired_at is not None:
            continue
        days = requirements[subject_id]
        due = on + timedelta(days=window if days is None else days)
        if effective_on is not None and effective_on > due:
            due = effective_on
        newest[subject_id] = (item_id, due, major, minor)
    result: dict[int, Target] = {}
    for subject_id, (item_id, due, major, minor) in newest.items():
        counting = () if subject_id in every else tuple(
            i_id for s, i_id, _e, _w, i_major, i_minor, _sup, retired_at in rows
            if s == subject_id and i_id != item_id and i_major == major and i_minor < minor and retired_at is None)
        result[subject_id] = (item_id, due, counting)
    return result


def held_job_functions(user_id: int, on: date | None = None) -> list[int]:
    on = on or now_utc().date()
    return list(db.session.scalars(sa.select(UserJobFunction.job_function_id).where(
        UserJobFunction.user_id == user_id, UserJobFunction.valid_from <= on,
        sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))))


# sources that follow from the training matrix; training assigned by hand or by a CAPA is never cancelled by it
REQUIREMENT_SOURCES = (SOURCE_REVISION_APPROVAL, SOURCE_JOB_FUNCTION, SOURCE_MATRIX, SOURCE_RECURRENCE, SOURCE_IMPORT)


def reconcile_user(user_id: int, *, reason: str, source_type: str = SOURCE_JOB_FUNCTION) -> tuple[int, int]:
    """Bring one person's open assignments in line with the job functions they hold today: create what is missing,
    cancel open matrix-derived training on subjects no longer required (with `reason`); training assigned by hand
    or by a quality event stays. Idempotent. Returns (created, cancelled)."""
    required = targets_for(held_job_functions(user_id))
    mine = list(db.session.scalars(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == user_id)))
    now = now_utc()
    rows = []
    for subject_id, (item_id, due_on, counting) in required.items():
        on_item = [a for a in mine if a.item_id == item_id]
        if any(a.status in (OPEN, COMPLETED) for a in on_item):
            continue  # assigned already, or trained
        if any(a.status == COMPLETED and a.item_id in counting for a in mine):
            continue  # earlier training still counts (e.g. "major changes only")
        # training cancelled or superseded before (the person left the job function, or the account was
        # deactivated) is assigned again, as the next cycle
        cycle = max((a.cycle for a in on_item), default=-1) + 1
        rows.append({"user_id": user_id, "subject_id": subject_id, "item_id": item_id, "status": OPEN,
                     "cycle": cycle, "source_type": source_type, "source_id": None, "due_on": due_on,
                     "assigned_at": now})
    bulk.bulk_insert(TrainingAssignment, rows)
    stale = [a.id for a in mine
             if a.status == OPEN and a.subject_id not in required and a.source_type in REQUIREMENT_SOURCES]
    cancelled = 0
    if stale:
        cancelled = bulk.bulk_update(TrainingAssignment, TrainingAssignment.id.in_(stale),
                                     {"status": CANCELLED, "closed_reason": reason})
    return len(rows), cancelled


def cancel_open_matrix_training(subject_id: int, user_ids: list[int], *, reason: str) -> int:
    """These people no longer need the subject: their open matrix-derived training on it is cancelled (training
    assigned by hand or by a quality event stays)."""
    cancelled = 0
    for start in range(0, len(user_ids), 5000):
        cancelled += bulk.bulk_update(TrainingAssignment, sa.and_(
            TrainingAssignment.subject_id == subject_id, TrainingAssignment.status == OPEN,
            TrainingAssignment.source_type.in_(REQUIREMENT_SOURCES),
            TrainingAssignment.user_id.in_(user_ids[start:start + 5000])),
            {"status": CANCELLED, "closed_reason": reason})
    return cancelled


def cancel_open_on_subject(subject_id: int, *, reason: str) -> int:
    """A subject is retired: every open assignment on any of its items is cancelled with the reason."""
    return bulk.bulk_update(TrainingAssignment,
                            sa.and_(TrainingAssignment.subject_id == subject_id, TrainingAssignment.status == OPEN),
                            {"status": CANCELLED, "closed_reason": reason})


def cancel_open_from(source_type: str, source_ids: Iterable[int], *, reason: str) -> int:
    """The record that assigned training (e.g. a CAPA retraining action) was cancelled: the open training it assigned
    is cancelled with the reason; completed training stays. Returns how many were cancelled."""
    ids = sorted(set(source_ids))
    if not ids:
        return 0
    return bulk.bulk_update(TrainingAssignment, sa.and_(
        TrainingAssignment.source_type == source_type, TrainingAssignment.source_id.in_(ids),
        TrainingAssignment.status == OPEN), {"status": CANCELLED, "closed_reason": reason})


def cancel_all_open(user_id: int, *, reason: str) -> int:
    """A person leaves (deactivation): every open assignment is cancelled with the reason; history is kept."""
    return bulk.bulk_update(TrainingAssignment,
                            sa.and_(TrainingAssignment.user_id == user_id, TrainingAssignment.status == OPEN),
                            {"status": CANCELLED, "closed_reason": reason})


def impact(job_function_ids: Iterable[int], item_id: int | None = None, on: date | None = None) -> dict:
    """What publishing an item for these job functions would assign: the people (active holders today who do not
    already have this item), counted by job function and by department. Shown to the approver before the final
    signature; everyone listed is not qualified on the effective date unless they train in time."""
    from core.org import Department, JobFunction

    on = on or now_utc().date()
    ids = list(set(job_function_ids))
    if not ids:
        return {"total": 0, "people": [], "by_job_function": [], "by_department": []}
    rows = db.session.execute(
        sa.select(User.id, User.full_name, User.username, Department.name, JobFunction.code)
        .join(UserJobFunction, UserJobFunction.user_id == User.id)
        .join(JobFunction, JobFunction.id == UserJobFunction.job_function_id)
        .outerjoin(Department, Department.id == User.department_id)
        .where(User.active.is_(True), UserJobFunction.job_function_id.in_(ids), UserJobFunction.valid_from <= on,
               sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))
        .order_by(User.full_name)).all()
    already = set()
    if item_id is not None:
        already = set(db.session.scalars(sa.select(TrainingAssignment.user_id)
                                         .where(TrainingAssignment.item_id == item_id)))
    people: dict[int, dict] = {}
    for uid, name, username, department, code in rows:
        if uid in already:
            continue
        person = people.setdefault(uid, {"name": name, "username": username, "department": department or "—",
                                         "job_functions": []})
        person["job_functions"].append(code)
    by_function: dict[str, int] = {}
    by_department: dict[str, int] = {}
    for person in people.values():
        for code in person["job_functions"]:
            by_function[code] = by_function.get(code, 0) + 1
        by_department[person["department"]] = by_department.get(person["department"], 0) + 1
    return {"total": len(people), "people": list(people.values()),
            "by_job_function": sorted(by_function.items()), "by_department": sorted(by_department.items())}
