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
from core.db import db, default_reason
from core.errors import InvalidTransition, NotPermitted
from signatures import models as sig
from signatures import services as signing
from signatures.lifecycle import Act, Lifecycle, SystemTransition, Transition, only
from training.models import (
    CANCELLED,
    COMPLETED,
    OPEN,
    STATUS_LABELS,
    SUPERSEDED,
    TrainingAssignment,
    TrainingItem,
)


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


def _check_reading(act: Act) -> None:
    """Read before signing: opened, for at least the subject's minimum reading time; never a retired item."""
    assignment = act.record
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


def _completed(act: Act) -> None:
    assignment = act.record
    assignment.completed_at = act.signature.signed_at
    assignment.signature_id = act.signature.id


def _signed_record(assignment: TrainingAssignment) -> signing.Signable:
    return signed_record(db.session.get(TrainingItem, assignment.item_id))


ASSIGNEE = only("user_id", "the person it is assigned to only",
                lambda _assignment: "Only the person it is assigned to can read and sign this training.")

LIFECYCLE = Lifecycle(
    "training_assignment", title="Training assignment (read and sign)", model=TrainingAssignment,
    noun="training assignment", labels=STATUS_LABELS, initial=OPEN,
    summary=lambda a: f"{db.session.get(TrainingItem, a.item_id).title} — "
                      f"{db.session.get(TrainingItem, a.item_id).subject.title}",
    # what is signed is the item's source record (the revision), whose version the page showed; the assignment is
    # locked and moves
    signed=_signed_record, fresh_against=_signed_record, require_version=False,
    state_refusal="This training is not open (it is completed, cancelled or superseded).",
    describe="""One person's training on one exact item (a document revision). The person opens the item (its
    content is shown through the item's link) and, once the subject's minimum reading time has passed, signs the
    revision itself "Read and understood": the signature binds the revision's content hash. Retraining on the same
    item is a new assignment (the next cycle) and a new signing round. The training engine closes open assignments
    that are no longer needed, in bulk and with a reason. See docs/training.md.""",
    system=[SystemTransition((OPEN,), CANCELLED, "cancelled by the training engine (no longer required, account "
                                                 "deactivated, document made obsolete, coordinator)"),
            SystemTransition((OPEN,), SUPERSEDED, "superseded when a newer version takes effect")],
    transitions=[
        Transition("sign", "I have read it: sign as “Read and understood”", (OPEN,), COMPLETED, "training.view_own",
                   sig.READ_AND_UNDERSTOOD, rules=(ASSIGNEE,), task="Reading and signing training",
                   verb="read and sign", confirm="Sign as read and understood", endpoint="sign",
                   check=_check_reading, effect=_completed, audit_reason="Read and understood",
                   # retraining on the same item (a later cycle) is a new signing round: only signatures since it was
                   # assigned count as "already signed"
                   since=lambda act: act.record.assigned_at,
                   done=lambda act: f"Signed: {act.transition.meaning}. Training on "
                                    f"{db.session.get(TrainingItem, act.record.item_id).title} is complete."),
    ])


def complete(assignment: TrainingAssignment, *, user: User, proof: signing.SignerProof,
             expected_version: str | None) -> sig.Signature:
    """Sign the assignment's item (its source record) as "Read and understood" and complete the assignment, no
    sooner than the subject's minimum reading time after the person first opened it, and never on a retired item.
    The assignment is locked and read as committed first: of several submissions at once (two tabs, a double click),
    the first completes it and the others find it completed."""
    return LIFECYCLE.apply(assignment, "sign", actor=user, proof=proof, expected_version=expected_version).signature
