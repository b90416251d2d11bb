"""The training matrix: which job functions must train on which documents (`DocumentAudience` rows), and the
training each requirement creates.

A requirement added, tightened or removed changes its holders' open training in the same transaction as the matrix
row. The revision lifecycle (`qms.documents.services`) asks this module who trains on an approved revision; the
release of revisions (`qms.documents.release`) asks who keeps open training on an earlier minor revision. Importing
this module registers `_audience_requirements` with the training engine, so a person given a job function is assigned
what the matrix requires of it.

Every function flushes and never commits (the caller wraps it in `core.db.transaction()`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import sqlalchemy as sa

from core.auth.models import User
from core.db import db
from core.errors import ValidationError
from core.org import JobFunction
from qms.documents.models import (
    APPROVED,
    EFFECTIVE,
    RETRAIN_EVERY,
    RETRAIN_MAJOR,
    RETRAIN_POLICIES,
    SUPERSEDED,
    Document,
    DocumentAudience,
    Revision,
)
from qms.rules import require, today_utc, whole_number
from training import engine as training
from training.models import COMPLETED, SOURCE_MATRIX, TrainingAssignment
from training.models import OPEN as OPEN_TRAINING


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


def retraining_job_functions(revision: Revision) -> list[int]:
    """The job functions whose holders train on this revision: all of the document's training requirements for a
    major revision, only those set to "every revision" for a minor one."""
    return [a.job_function_id for a in revision.document.audience
            if revision.minor == 0 or a.retrain != RETRAIN_MAJOR]


def major_only_holders(document: Document) -> list[int]:
    """People for whom every requirement on this document says "major revisions only"."""
    major = [a.job_function_id for a in document.audience if a.retrain == RETRAIN_MAJOR]
    every = [a.job_function_id for a in document.audience if a.retrain != RETRAIN_MAJOR]
    if not major:
        return []
    return sorted(set(training.holders(major)) - set(training.holders(every)))


def _optional_whole(field: str, value: object, label: str, minimum: int, maximum: int) -> int | None:
    return None if value is None or value == "" else whole_number(field, value, label, minimum, maximum)


def set_requirement(document: Document, job_function_id: int, *, retrain: str = RETRAIN_EVERY,
                    recurrence_months: int | None = None, days_allowed: int | None = None,
                    actor: User) -> tuple[DocumentAudience, int]:
    """Add a requirement to the training matrix, or change one (a change needs a reason for change).

    A new requirement assigns the document's current revision to every holder of the job function in the same
    transaction. Returns the requirement and how many people were assigned."""
    require(actor, "training.manage", "Changing the training matrix")
    if retrain not in RETRAIN_POLICIES:
        raise ValidationError("retrain", f"Retrain on must be one of: {', '.join(RETRAIN_POLICIES)}.")
    recurrence_months = _optional_whole("recurrence_months", recurrence_months, "Retrain every (months)", 1, 120)
    days_allowed = _optional_whole("days_allowed", days_allowed, "Days allowed", 0, 365)
    job_function_id = check_audience([job_function_id])[0]
    row = next((a for a in document.audience if a.job_function_id == job_function_id), None)
    if row is not None:
        if (row.retrain, row.recurrence_months, row.days_allowed) == (retrain, recurrence_months, days_allowed):
            raise ValidationError("retrain", "Nothing changed: the requirement already has these settings.")
        if not db.session.info.get("audit_reason"):
            raise ValidationError("reason", "A reason for change is required to change a training requirement.")
        row.retrain, row.recurrence_months, row.days_allowed = retrain, recurrence_months, days_allowed
        db.session.flush()
        # a stricter requirement (e.g. "every revision" instead of "major only") may need training at once
        return row, requirement_added(document, row)
    row = DocumentAudience(job_function_id=job_function_id, retrain=retrain, recurrence_months=recurrence_months,
                           days_allowed=days_allowed)
    document.audience.append(row)
    db.session.flush()
    return row, requirement_added(document, row)


def remove_requirement(requirement: DocumentAudience, *, actor: User) -> int:
    """Take a requirement out of the matrix (a reason is required): open matrix training its holders no longer need
    is cancelled with the reason. Returns how many assignments were cancelled."""
    require(actor, "training.manage", "Changing the training matrix")
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", "A reason for change is required to remove a training requirement.")
    document = requirement.document
    job_function_id = requirement.job_function_id
    document.audience.remove(requirement)
    db.session.flush()
    return requirement_removed(document, [job_function_id])


def requirement_added(document: Document, requirement: DocumentAudience) -> int:
    """The holders of the requirement's job function train on the document's newest approved or effective revision,
    due within the days allowed (or by its effective date, if later)."""
    target = db.session.scalar(sa.select(Revision).where(Revision.document_id == document.id,
                                                         Revision.status.in_([APPROVED, EFFECTIVE]))
                               .order_by(Revision.major.desc(), Revision.minor.desc()).limit(1))
    if target is None:
        return 0
    users = training.holders([requirement.job_function_id])
    have = set(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
        TrainingAssignment.revision_id == target.id, TrainingAssignment.status.in_([OPEN_TRAINING, COMPLETED]))))
    if requirement.retrain == RETRAIN_MAJOR and target.minor > 0:
        # training on an earlier minor revision of the same major revision still counts (unless another of the
        # person's job functions requires every revision)
        every = {a.job_function_id for a in document.audience if a.retrain != RETRAIN_MAJOR}
        strict = set(training.holders(every)) if every else set()
        earlier = sa.select(Revision.id).where(Revision.document_id == document.id, Revision.major == target.major,
                                               Revision.minor < target.minor)
        have |= set(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
            TrainingAssignment.revision_id.in_(earlier), TrainingAssignment.status == COMPLETED))) - strict
    cycles = training.latest_cycles(users, target.id)
    days = requirement.days_allowed if requirement.days_allowed is not None else document.training_window_days
    due = today_utc() + timedelta(days=days)
    if target.effective_on is not None and target.effective_on > due:
        due = target.effective_on
    code = db.session.get(JobFunction, requirement.job_function_id).code
    rows = [{"user_id": uid, "document_id": document.id, "revision_id": target.id,
             "cycle": cycles[uid][0] + 1 if uid in cycles else 0, "source_type": SOURCE_MATRIX,
             "source_id": requirement.id, "due_on": due,
             "assigned_reason": f"{document.number} required for job function {code}"}
            for uid in users if uid not in have]
    return training.create_assignments(rows)


def requirement_removed(document: Document, job_function_ids: list[int]) -> int:
    """Cancel the open matrix training on this document of the holders of the removed job functions, except those
    another of their job functions still requires it to (set-based: one statement per chunk of people)."""
    codes = ", ".join(db.session.scalars(sa.select(JobFunction.code).where(JobFunction.id.in_(job_function_ids))))
    still = set(training.holders([a.job_function_id for a in document.audience]))
    affected = [uid for uid in training.holders(job_function_ids) if uid not in still]
    return training.cancel_open_matrix_training(
        document.id, affected, reason=f"{document.number} no longer required for {codes} (training matrix changed)")


@training.register_source
def _audience_requirements(job_function_ids: list[int], on: date) -> list[tuple[int, int, date | None, tuple]]:
    """What a holder of these job functions must be trained on: for each document whose training requirements
    include one of them, its newest approved-or-effective revision, due by its effective date or the days allowed
    from today (the requirement's, else the document's training window), whichever is later; and, when every one
    of those requirements says "major revisions only", the earlier revisions of the same major revision whose
    completed training still counts."""
    requirements: dict[int, int | None] = {}
    every: set[int] = set()
    for document_id, days, retrain in db.session.execute(
            sa.select(DocumentAudience.document_id, DocumentAudience.days_allowed, DocumentAudience.retrain)
            .where(DocumentAudience.job_function_id.in_(job_function_ids))):
        # several job functions requiring one document: the shortest window given applies
        if document_id not in requirements or (days is not None and (requirements[document_id] is None
                                                                     or days < requirements[document_id])):
            requirements[document_id] = days
        if retrain != RETRAIN_MAJOR:
            every.add(document_id)
    rows = db.session.execute(
        sa.select(Revision.document_id, Revision.id, Revision.effective_on, Document.training_window_days,
                  Revision.major, Revision.minor, Revision.status)
        .join(Document, Document.id == Revision.document_id)
        .where(Revision.document_id.in_(list(requirements)),
               Revision.status.in_([APPROVED, EFFECTIVE, SUPERSEDED]))
        .order_by(Revision.document_id, Revision.major, Revision.minor)).all()
    newest: dict[int, tuple[int, date | None, int, int]] = {}
    for document_id, revision_id, effective_on, window, major, minor, status in rows:
        if status == SUPERSEDED:
            continue
        days = requirements[document_id]
        due = on + timedelta(days=window if days is None else days)
        if effective_on is not None and effective_on > due:
            due = effective_on
        newest[document_id] = (revision_id, due, major, minor)
    targets = []
    for doc, (rev, due, major, minor) in newest.items():
        counting = () if doc in every else tuple(
            r_id for d, r_id, _e, _w, r_major, r_minor, _s in rows
            if d == doc and r_id != rev and r_major == major and r_minor < minor)
        targets.append((doc, rev, due, counting))
    return targets
