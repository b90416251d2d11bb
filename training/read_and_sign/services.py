"""Read-and-sign: a trainee opens the exact item (e.g. document revision) assigned to them and signs it as "Read and
understood".

Training sits below qms, so this module never imports it: what is signed is the item's source record (the revision),
found through the signatures registry (`signatures.services.record_for`), so the signature binds the hash of the
revision's own canonical content. Training on revision 2 never counts for revision 3.
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
from training.models import COMPLETED, OPEN, TrainingAssignment, TrainingItem


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


def signed_record(item: TrainingItem) -> signing.Signable:
    """The record a completion of this item signs: the item's source record (e.g. the document revision)."""
    record = signing.record_for(item.source_type, item.source_id)
    if record is None:  # pragma: no cover - every published item names a registered, existing record
        raise InvalidTransition(f"{item.title} has no record to sign.")
    return record


def complete(assignment: TrainingAssignment, *, user: User, proof: signing.SignerProof,
             expected_version: str | None) -> sig.Signature:
    """Sign the assignment's item (its source record) as "Read and understood" and complete the assignment, no
    sooner than the subject's minimum reading time after the person first opened it, and never on a retired item."""
    # lock the assignment and read it as committed (the page's copy may be older): of several submissions at once
    # (two tabs, a double click), the first completes it and the others find it completed
    lock_row(assignment)
    _check_assignee(assignment, user)
    if assignment.status != OPEN:
        raise InvalidTransition("This training is not open (it is completed, cancelled or superseded).")
    item = db.session.get(TrainingItem, assignment.item_id)
    if item.retired_at is not None:
        raise InvalidTransition("This document is obsolete: there is nothing to train on any more.")
    if assignment.opened_at is None:
        raise InvalidTransition("Open the document first: read it before you sign.")
    min_read_seconds = item.subject.min_read_seconds or 0
    read_for = (now_utc() - assignment.opened_at).total_seconds()
    if read_for < min_read_seconds:
        wait = int(min_read_seconds - read_for) + 1
        raise InvalidTransition(f"This document asks for at least {min_read_seconds} seconds of reading; you opened "
                                f"it {int(read_for)} seconds ago. Read on and sign in {wait} seconds.")
    default_reason("Read and understood")
    # retraining on the same item (a later cycle) is a new signing round: only signatures since it was assigned
    # count as "already signed"
    signature = signing.sign(signed_record(item), signer=user, proof=proof, meaning=sig.READ_AND_UNDERSTOOD,
                             expected_version=expected_version, allowed=(sig.READ_AND_UNDERSTOOD,),
                             since=assignment.assigned_at)
    assignment.status = COMPLETED
    assignment.completed_at = signature.signed_at
    assignment.signature_id = signature.id
    db.session.flush()
    return signature
