"""Read-and-sign: a trainee opens the exact revision assigned to them and signs it as "Read and understood".

Training sits below qms, so this module never imports it: the caller passes the revision as a `Signable` and the
service checks that it is the assignment's own revision (training on revision 2 never counts for revision 3).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason, lock_row
from core.errors import InvalidTransition, NotPermitted
from signatures import models as sig
from signatures import services as signing
from training.models import COMPLETED, OPEN, TrainingAssignment


def is_overdue(assignment: TrainingAssignment, today: date | None = None) -> bool:
    today = today or now_utc().date()
    return assignment.status == OPEN and assignment.due_on is not None and assignment.due_on < today


def my_assignments(user_id: int) -> tuple[list[TrainingAssignment], list[TrainingAssignment]]:
    """(open assignments, overdue first then by due date; completed history, newest first)."""
    today = now_utc().date()
    open_rows = list(db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id == user_id, TrainingAssignment.status == OPEN)))
    open_rows.sort(key=lambda a: (not is_overdue(a, today), a.due_on is None, a.due_on or date.max, a.id))
    done = list(db.session.scalars(
        sa.select(TrainingAssignment)
        .where(TrainingAssignment.user_id == user_id, TrainingAssignment.status == COMPLETED)
        .order_by(TrainingAssignment.completed_at.desc(), TrainingAssignment.id.desc())))
    return open_rows, done


def _check_assignee(assignment: TrainingAssignment, user: User) -> None:
    if assignment.user_id != user.id:
        raise NotPermitted("Only the person it is assigned to can read and sign this training.")


def mark_opened(assignment: TrainingAssignment, user: User) -> bool:
    """Record when the assignee first opened the document. Returns True when this call recorded it."""
    _check_assignee(assignment, user)
    if assignment.opened_at is not None or assignment.status != OPEN:
        return False
    default_reason("Training document opened")
    assignment.opened_at = now_utc()
    db.session.flush()
    return True


def complete(assignment: TrainingAssignment, *, user: User, proof: signing.SignerProof, record: signing.Signable,
             expected_version: str | None, min_read_seconds: int = 0, retired: bool = False) -> sig.Signature:
    """Sign `record` (the assignment's exact revision) as "Read and understood" and complete the assignment, no
    sooner than `min_read_seconds` after the person first opened it (the document's minimum reading time), and never
    on a `retired` (obsolete) revision."""
    # lock the assignment and read it as committed (the page's copy may be older): of several submissions at once
    # (two tabs, a double click), the first completes it and the others find it completed
    lock_row(assignment)
    _check_assignee(assignment, user)
    if assignment.status != OPEN:
        raise InvalidTransition("This training is not open (it is completed, cancelled or superseded).")
    if record.id != assignment.revision_id:
        raise InvalidTransition("Training counts only for the exact revision it was assigned on.")
    if retired:
        raise InvalidTransition("This document is obsolete: there is nothing to train on any more.")
    if assignment.opened_at is None:
        raise InvalidTransition("Open the document first: read it before you sign.")
    read_for = (now_utc() - assignment.opened_at).total_seconds()
    if read_for < min_read_seconds:
        wait = int(min_read_seconds - read_for) + 1
        raise InvalidTransition(f"This document asks for at least {min_read_seconds} seconds of reading; you opened "
                                f"it {int(read_for)} seconds ago. Read on and sign in {wait} seconds.")
    default_reason("Read and understood")
    # retraining on the same revision (a later cycle) is a new signing round: only signatures since it was assigned
    # count as "already signed"
    signature = signing.sign(record, signer=user, proof=proof, meaning=sig.READ_AND_UNDERSTOOD,
                             expected_version=expected_version, allowed=(sig.READ_AND_UNDERSTOOD,),
                             since=assignment.assigned_at)
    assignment.status = COMPLETED
    assignment.completed_at = signature.signed_at
    assignment.signature_id = signature.id
    db.session.flush()
    return signature
