"""The assignment engine: computes which (person, revision) assignments must exist for a trigger and creates the
missing ones, idempotently, inside the caller's transaction.

It takes ids and values, never qms objects (training sits below qms in the package order). Assignments are written
through core.bulk, one statement per chunk with their audit (version) rows, so that a revision whose audience holds
thousands of people is approved in about a second, in the same transaction as the approval signature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

import sqlalchemy as sa

from core import bulk
from core.auth.models import User
from core.clock import now_utc
from core.db import db
from training.models import (
    CANCELLED,
    COMPLETED,
    OPEN,
    SOURCE_IMPORT,
    SOURCE_JOB_FUNCTION,
    SOURCE_MATRIX,
    SOURCE_RECURRENCE,
    SOURCE_REVISION_APPROVAL,
    SUPERSEDED,
    TrainingAssignment,
    UserJobFunction,
)


def holders(job_function_ids: Iterable[int], on: date | None = None, *,
            as_select: bool = False) -> list[int] | sa.Select:
    """Ids of active users holding any of the job functions on day `on` (default today), in id order.

    With `as_select`, the query instead (one column, `user_id`), for set-based writes such as assign_for_revision. It
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


def assign_for_revision(*, revision_id: int, document_id: int, job_function_ids: Iterable[int],
                        due_on: date | None, source_type: str = SOURCE_REVISION_APPROVAL,
                        source_id: int | None = None) -> int:
    """Assign the revision to every active holder of the audience job functions who does not have it yet.

    Returns how many assignments were created (0 when run again: idempotent). A concurrent duplicate is impossible:
    (user, revision) is unique in the database, so a racing transaction fails and rolls back whole.

    The rows are selected and written by the database in one INSERT ... SELECT (with their version rows): the
    audience is never loaded into Python, however large."""
    assignment = TrainingAssignment.__table__.c
    values = {"document_id": document_id, "revision_id": revision_id, "status": OPEN, "source_type": source_type,
              "source_id": source_id if source_id is not None else revision_id, "due_on": due_on,
              "assigned_at": now_utc()}
    assigned = sa.select(assignment.user_id).where(assignment.revision_id == revision_id)
    rows = (holders(job_function_ids, as_select=True)
            .add_columns(*[sa.literal(v, assignment[k].type).label(k) for k, v in values.items()])
            .where(User.__table__.c.id.not_in(assigned)))
    return len(bulk.bulk_insert(TrainingAssignment, rows))


def supersede_open_assignments(*, revision_ids: Iterable[int], reason: str, policy: str = "supersede",
                               keep_user_ids: Iterable[int] = ()) -> int:
    """Close the open assignments of revisions no longer in force (policy "supersede", the default) or leave them
    open ("keep"). Completed training is never touched, nor open training of `keep_user_ids` (people for whom the
    replaced revision still counts, e.g. "major revisions only" after a minor revision). Returns how many closed."""
    ids = list(revision_ids)
    if policy == "keep" or not ids:
        return 0
    where = sa.and_(TrainingAssignment.revision_id.in_(ids), TrainingAssignment.status == OPEN)
    keep = sorted(set(keep_user_ids))
    if keep:
        where = sa.and_(where, TrainingAssignment.user_id.not_in(keep))
    return bulk.bulk_update(TrainingAssignment, where, {"status": SUPERSEDED, "closed_reason": reason})


def create_assignments(rows: list[dict]) -> int:
    """Write prepared assignment rows (user_id, document_id, revision_id, cycle, source_type, source_id, due_on,
    assigned_reason) with their audit rows. Callers decide who needs what; the unique (user, revision, cycle)
    constraint refuses a concurrent duplicate, rolling the whole transaction back."""
    if not rows:
        return 0
    now = now_utc()
    full = [{"status": OPEN, "assigned_at": now, "cycle": 0, "source_id": None, "due_on": None,
             "assigned_reason": None, **row} for row in rows]
    bulk.bulk_insert(TrainingAssignment, full)
    return len(full)


def latest_cycles(user_ids: Iterable[int], revision_id: int) -> dict[int, tuple[int, str]]:
    """user id -> (highest cycle, its status) of their assignments on the revision."""
    ids = list(set(user_ids))
    result: dict[int, tuple[int, str]] = {}
    for start in range(0, len(ids), 5000):
        for uid, cycle, status in db.session.execute(
                sa.select(TrainingAssignment.user_id, TrainingAssignment.cycle, TrainingAssignment.status)
                .where(TrainingAssignment.revision_id == revision_id,
                       TrainingAssignment.user_id.in_(ids[start:start + 5000]))):
            if uid not in result or cycle > result[uid][0]:
                result[uid] = (cycle, status)
    return result


# --- people joining and leaving job functions -------------------------------------------------------------------------

# A target is (document_id, revision_id, due_on, counting): what a holder of some job functions must be trained on
# now; `counting` are other revision ids whose completed training already satisfies it (e.g. 1.0 for 1.1 under
# "major revisions only").
Target = tuple[int, int, date | None, tuple[int, ...]]
TargetSource = Callable[[list[int], date], list[Target]]
_SOURCES: list[TargetSource] = []


def register_source(source: TargetSource) -> TargetSource:
    """Higher packages (qms) tell the engine what their records require of a job function's holders: given job
    function ids and today, the (document, revision, due date, counting revisions) each holder must be trained on."""
    if source not in _SOURCES:
        _SOURCES.append(source)
    return source


def targets_for(job_function_ids: Iterable[int], on: date | None = None
                ) -> dict[int, tuple[int, date | None, tuple[int, ...]]]:
    """document id -> (revision id, due date, counting revision ids) required of a holder of these job functions."""
    ids = sorted(set(job_function_ids))
    on = on or now_utc().date()
    result: dict[int, tuple[int, date | None, tuple[int, ...]]] = {}
    if ids:
        for source in _SOURCES:
            for document_id, revision_id, due_on, counting in source(ids, on):
                result[document_id] = (revision_id, due_on, tuple(counting))
    return result


def held_job_functions(user_id: int, on: date | None = None) -> list[int]:
    on = on or now_utc().date()
    return list(db.session.scalars(sa.select(UserJobFunction.job_function_id).where(
        UserJobFunction.user_id == user_id, UserJobFunction.valid_from <= on,
        sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > on))))


# sources that follow from the training matrix; training assigned by hand or by a CAPA is never cancelled by it
REQUIREMENT_SOURCES = (SOURCE_REVISION_APPROVAL, SOURCE_JOB_FUNCTION, SOURCE_MATRIX, SOURCE_RECURRENCE, SOURCE_IMPORT)


def reconcile_user(user_id: int, *, reason: str, source_type: str = "job_function") -> tuple[int, int]:
    """Bring one person's open assignments in line with the job functions they hold today: create what is missing,
    cancel open matrix-derived training on documents no longer required (with `reason`); training assigned by hand
    or by a quality event stays. Idempotent. Returns (created, cancelled)."""
    required = targets_for(held_job_functions(user_id))
    mine = list(db.session.scalars(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == user_id)))
    now = now_utc()
    rows = []
    for doc_id, (rev_id, due_on, counting) in required.items():
        on_revision = [a for a in mine if a.revision_id == rev_id]
        if any(a.status in (OPEN, COMPLETED) for a in on_revision):
            continue  # assigned already, or trained
        if any(a.status == COMPLETED and a.revision_id in counting for a in mine):
            continue  # earlier training still counts (e.g. "major revisions only")
        # training cancelled or superseded before (the person left the job function, or the account was
        # deactivated) is assigned again, as the next cycle
        cycle = max((a.cycle for a in on_revision), default=-1) + 1
        rows.append({"user_id": user_id, "document_id": doc_id, "revision_id": rev_id, "status": OPEN,
                     "cycle": cycle, "source_type": source_type, "source_id": None, "due_on": due_on,
                     "assigned_at": now})
    bulk.bulk_insert(TrainingAssignment, rows)
    stale = [a.id for a in mine
             if a.status == OPEN and a.document_id not in required and a.source_type in REQUIREMENT_SOURCES]
    cancelled = 0
    if stale:
        cancelled = bulk.bulk_update(TrainingAssignment, TrainingAssignment.id.in_(stale),
                                     {"status": CANCELLED, "closed_reason": reason})
    return len(rows), cancelled


def cancel_open_matrix_training(document_id: int, user_ids: list[int], *, reason: str) -> int:
    """These people no longer need the document: their open matrix-derived training on it is cancelled (training
    assigned by hand or by a quality event stays)."""
    cancelled = 0
    for start in range(0, len(user_ids), 5000):
        cancelled += bulk.bulk_update(TrainingAssignment, sa.and_(
            TrainingAssignment.document_id == document_id, TrainingAssignment.status == OPEN,
            TrainingAssignment.source_type.in_(REQUIREMENT_SOURCES),
            TrainingAssignment.user_id.in_(user_ids[start:start + 5000])),
            {"status": CANCELLED, "closed_reason": reason})
    return cancelled


def cancel_open_on_document(document_id: int, *, reason: str) -> int:
    """A document is retired: every open assignment on any of its revisions is cancelled with the reason."""
    return bulk.bulk_update(TrainingAssignment,
                            sa.and_(TrainingAssignment.document_id == document_id, TrainingAssignment.status == OPEN),
                            {"status": CANCELLED, "closed_reason": reason})


def cancel_all_open(user_id: int, *, reason: str) -> int:
    """A person leaves (deactivation): every open assignment is cancelled with the reason; history is kept."""
    return bulk.bulk_update(TrainingAssignment,
                            sa.and_(TrainingAssignment.user_id == user_id, TrainingAssignment.status == OPEN),
                            {"status": CANCELLED, "closed_reason": reason})


def impact(job_function_ids: Iterable[int], revision_id: int | None = None, on: date | None = None) -> dict:
    """What approving a revision for these job functions would assign: the people (active holders today who do not
    already have this revision), counted by job function and by department. Shown to the approver before the final
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
    if revision_id is not None:
        already = set(db.session.scalars(sa.select(TrainingAssignment.user_id)
                                         .where(TrainingAssignment.revision_id == revision_id)))
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
