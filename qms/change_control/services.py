"""Change control use cases: raise, edit, scope (affected documents and job functions), tasks, and the signed
lifecycle Draft -> Submitted -> Approved -> In implementation -> Verification -> Closed (or Cancelled).

Every function flushes and never commits: the caller wraps it in `core.db.transaction()`, so any refusal rolls back
everything the call wrote, signatures and started draft revisions included. Each row is changed at most once per
unit of work (the append-only audit tables refuse a second version row of one row in one transaction): a service
validates and reads first, signs, then writes.

Closure is gated on training: every revision started from the change must have taken effect and every assignment
on those revisions (the training they created) must be complete, unless QA signs "Approved with open training" with
a justification; the people outstanding are then named in the audited `closure_override_note` and the signature
binds that list by its SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason, lock_row
from core.errors import InvalidTransition, NotPermitted, ValidationError
from core.org import JobFunction
from qms.change_control.models import (
    APPROVED,
    CANCELLED,
    CHANGE_TYPES,
    CLOSED,
    DRAFT,
    IMPLEMENTATION,
    RISK_LEVELS,
    STATUS_LABELS,
    SUBMITTED,
    TASK_CANCELLED,
    TASK_DONE,
    TASK_OPEN,
    TASK_STATUS_LABELS,
    VERIFICATION,
    ChangeControl,
    ChangeDocument,
    ChangeJobFunction,
    ChangeTask,
)
from qms.documents import publish
from qms.documents import services as documents
from qms.documents.models import Document, Revision
from qms.numbering import next_number
from qms.rules import check_fresh, check_status, require, required_text
from signatures import models as sig
from signatures.lifecycle import Act, Lifecycle, Transition, comment, justification, never, only, required_comment
from signatures.services import SignerProof
from training.models import CANCELLED as TRAINING_CANCELLED
from training.models import COMPLETED as TRAINING_COMPLETED
from training.models import OPEN as TRAINING_OPEN
from training.models import TrainingAssignment

FINAL = (CLOSED, CANCELLED)
EDITABLE_TASKS = (DRAFT, SUBMITTED, APPROVED, IMPLEMENTATION)


# --- helpers ----------------------------------------------------------------------------------------------------------


def _choice(field_name: str, value: str | None, options: dict[str, str], label: str) -> str:
    if value not in options:
        raise ValidationError(field_name, f"{label} must be one of: {', '.join(options.values())}.")
    return value


def _owner(field_name: str, owner_id: int | None, *, permission: str | None = "quality.manage") -> User:
    owner = db.session.get(User, owner_id) if isinstance(owner_id, int) else None
    if owner is None or not owner.active:
        raise ValidationError(field_name, "Owner must be an active user.")
    if permission and not owner.can(permission):
        raise ValidationError(field_name, f"Owner must hold “Raise and edit change controls, deviations and CAPAs” "
                                          f"({permission}); {owner.full_name} does not.")
    return owner


def _check_reason(action: str) -> None:
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", f"A reason for change is required to {action} once it has left Draft.")


def _fields(title: str, description: str, justification: str, change_type: str, risk_level: str,
            risk_rationale: str, owner_id: int | None) -> dict:
    return {"title": required_text("title", title, "Title", limit=300),
            "description": required_text("description", description, "Description"),
            "justification": required_text("justification", justification, "Justification"),
            "change_type": _choice("change_type", change_type, CHANGE_TYPES, "Change type"),
            "risk_level": _choice("risk_level", risk_level, RISK_LEVELS, "Risk level"),
            "risk_rationale": required_text("risk_rationale", risk_rationale, "Risk rationale"),
            "owner_id": _owner("owner_id", owner_id).id}


def _documents(ids: Iterable[int]) -> list[int]:
    wanted = sorted(set(ids))
    found = set(db.session.scalars(sa.select(Document.id).where(Document.id.in_(wanted)))) if wanted else set()
    missing = [str(i) for i in wanted if i not in found]
    if missing:
        raise ValidationError("document_ids", f"Unknown document id(s): {', '.join(missing)}.")
    return wanted


def _job_functions(ids: Iterable[int]) -> list[int]:
    wanted = sorted(set(ids))
    found = {j.id: j for j in db.session.scalars(sa.select(JobFunction).where(JobFunction.id.in_(wanted)))} \
        if wanted else {}
    missing = [str(i) for i in wanted if i not in found]
    if missing:
        raise ValidationError("job_function_ids", f"Unknown job function id(s): {', '.join(missing)}.")
    inactive = [found[i].code for i in wanted if not found[i].active]
    if inactive:
        raise ValidationError("job_function_ids", f"Inactive job function(s): {', '.join(inactive)}.")
    return wanted


# --- create and edit --------------------------------------------------------------------------------------------------


def create_change(*, actor: User, title: str, description: str, justification: str, change_type: str,
                  risk_level: str, risk_rationale: str, owner_id: int | None, document_ids: Iterable[int] = (),
                  job_function_ids: Iterable[int] = ()) -> ChangeControl:
    """Raise a change control in Draft. The number is taken last (it holds the counter's lock until commit)."""
    require(actor, "quality.manage", "Raising a change control")
    values = _fields(title, description, justification, change_type, risk_level, risk_rationale, owner_id)
    docs, functions = _documents(document_ids), _job_functions(job_function_ids)
    change = ChangeControl(**values, status=DRAFT, created_at=now_utc(), number=next_number("CC"))
    change.documents = [ChangeDocument(document_id=i) for i in docs]
    change.job_functions = [ChangeJobFunction(job_function_id=i) for i in functions]
    db.session.add(change)
    db.session.flush()
    return change


def update_change(change: ChangeControl, *, actor: User, expected_row_version: int | str | None, title: str,
                  description: str, justification: str, change_type: str, risk_level: str, risk_rationale: str,
                  owner_id: int | None) -> ChangeControl:
    """Edit the record: freely in Draft; in later open states only with a reason for change (the transaction's).
    Signatures made on the earlier content stay on record, shown as made on an earlier version."""
    require(actor, "quality.manage", "Editing a change control")
    lock_row(change)
    if change.status in FINAL:
        raise InvalidTransition(f"{change.audit_title()} is {change.status_label}; it can no longer be edited.")
    check_fresh(change, expected_row_version)
    values = _fields(title, description, justification, change_type, risk_level, risk_rationale, owner_id)
    if all(getattr(change, k) == v for k, v in values.items()):
        raise ValidationError("title", "Nothing changed.")
    if change.status == DRAFT:
        default_reason("Draft change control edited")
    else:
        _check_reason("edit a change control")
    for name, value in values.items():
        setattr(change, name, value)
    db.session.flush()
    return change


def set_scope(change: ChangeControl, *, actor: User, expected_row_version: int | str | None,
              document_ids: Iterable[int], job_function_ids: Iterable[int]) -> ChangeControl:
    """Set the affected documents and job functions. Only in Draft: the scope is what QA approves, and the drafts
    are started from it."""
    require(actor, "quality.manage", "Changing the scope of a change control")
    lock_row(change)
    check_status(change, (DRAFT,), "change the affected documents and job functions of", noun="change control",
                 labels=STATUS_LABELS)
    check_fresh(change, expected_row_version)
    docs, functions = set(_documents(document_ids)), set(_job_functions(job_function_ids))
    default_reason("Scope of the draft change control changed")
    for row in list(change.documents):
        if row.document_id not in docs:
            change.documents.remove(row)
    for row in list(change.job_functions):
        if row.job_function_id not in functions:
            change.job_functions.remove(row)
    have_docs = {r.document_id for r in change.documents}
    have_functions = {r.job_function_id for r in change.job_functions}
    change.documents.extend(ChangeDocument(document_id=i) for i in sorted(docs - have_docs))
    change.job_functions.extend(ChangeJobFunction(job_function_id=i) for i in sorted(functions - have_functions))
    db.session.flush()
    return change


# --- tasks ------------------------------------------------------------------------------------------------------------


def add_task(change: ChangeControl, *, actor: User, title: str, owner_id: int | None,
             due_on: date | None) -> ChangeTask:
    require(actor, "quality.manage", "Adding an implementation task")
    lock_row(change)
    check_status(change, EDITABLE_TASKS, "add a task to", noun="change control", labels=STATUS_LABELS)
    title = required_text("task_title", title, "Task", limit=300)
    owner = _owner("task_owner_id", owner_id, permission=None)
    if not isinstance(due_on, date):
        raise ValidationError("due_on", "Due date is required.")
    task = ChangeTask(change=change, title=title, owner_id=owner.id, due_on=due_on, status=TASK_OPEN)
    db.session.add(task)
    db.session.flush()
    return task


def set_task_status(task: ChangeTask, *, actor: User, status: str, note: str | None = None) -> ChangeTask:
    """The task's owner or a quality manager marks a task done, cancelled (with a note saying why) or open again.
    Tasks are fixed once the change is in Verification."""
    if actor is None or not actor.active or not (actor.can("quality.manage") or actor.id == task.owner_id):
        raise NotPermitted("Only the task's owner or a quality manager (quality.manage) can change a task.")
    change = task.change
    lock_row(change)
    check_status(change, EDITABLE_TASKS, "change a task of", noun="change control", labels=STATUS_LABELS)
    lock_row(task)
    status = _choice("status", status, TASK_STATUS_LABELS, "Task status")
    if status == task.status:
        raise ValidationError("status", f"The task is already {TASK_STATUS_LABELS[status]}.")
    note = (note or "").strip() or None
    if status == TASK_CANCELLED and note is None:
        raise ValidationError("note", "Say why the task is cancelled.")
    if note is not None and len(note) > 2000:
        raise ValidationError("note", "Note must be at most 2,000 characters.")
    default_reason(f"Task {TASK_STATUS_LABELS[status].lower()}" + (f": {note}" if note else ""))
    task.status = status
    task.completed_at = now_utc() if status == TASK_DONE else None
    if note is not None:
        task.note = note
    db.session.flush()
    return task



# --- the lifecycle: checks, effects and the declaration ---------------------------------------------------------------
# Each use case below applies one declared transition (LIFECYCLE, at the end of the module): the lifecycle locks the
# row, checks permission, state, the owner rules and the page's version, signs, moves the status and runs the effect.


def _apply(change: ChangeControl, action: str, *, actor: User, proof: SignerProof | None = None,
           expected_row_version: int | str | None, text: str | None = None, **values) -> ChangeControl:
    LIFECYCLE.apply(change, action, actor=actor, proof=proof, expected_version=expected_row_version, text=text,
                    values=values)
    return change


def submit(change: ChangeControl, *, actor: User, proof: SignerProof,
           expected_row_version: int | str | None) -> ChangeControl:
    """The owner signs "Authored" and the change goes to QA for approval."""
    return _apply(change, "submit", actor=actor, proof=proof, expected_row_version=expected_row_version)


def approve(change: ChangeControl, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
            comment: str | None = None) -> ChangeControl:
    """QA signs "Approved": the change may be implemented."""
    return _apply(change, "approve", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=comment)


def reject(change: ChangeControl, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           comment: str) -> ChangeControl:
    """QA signs "Rejected" with a comment; the change returns to Draft for its owner."""
    return _apply(change, "reject", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=comment)


def start_implementation(change: ChangeControl, *, actor: User, expected_row_version: int | str | None,
                         major: bool = True) -> ChangeControl:
    """Start the approved change: a new draft revision of each affected document, authored by the actor (who must
    hold documents.author when there are documents), with a change summary and reason naming the change control,
    its content copied from the document's latest revision, linked in ChangeDocument.revision_id. A document that
    already has an open revision refuses the whole start (finish or reject that revision first)."""
    return _apply(change, "start", actor=actor, expected_row_version=expected_row_version, major=major)


def to_verification(change: ChangeControl, *, actor: User, expected_row_version: int | str | None) -> ChangeControl:
    """Implementation is finished: every task is done or cancelled."""
    return _apply(change, "verification", actor=actor, expected_row_version=expected_row_version)


# --- training progress and closure ------------------------------------------------------------------------------------


@dataclass
class RevisionProgress:
    """Live training on one revision started from the change: its assignments (the training it created)."""

    change_document: ChangeDocument
    document: Document
    revision: Revision | None
    assigned: int = 0
    completed: int = 0
    open: int = 0
    overdue: int = 0
    outstanding: list[tuple[User, date | None, bool]] = field(default_factory=list)  # (person, due, overdue)
    assignments: list[tuple[TrainingAssignment, User]] = field(default_factory=list)  # the chain, by person

    @property
    def in_force(self) -> bool:
        return self.revision is not None and self.revision.effective_at is not None


def progress(change: ChangeControl, today: date | None = None) -> list[RevisionProgress]:
    """Per affected document: the linked revision, counts of its assignments (cancelled ones left out) and the
    people with open training, most overdue first."""
    today = today or now_utc().date()
    rows = sorted(change.documents, key=lambda r: r.document_id)
    docs = {d.id: d for d in db.session.scalars(sa.select(Document).where(
        Document.id.in_([r.document_id for r in rows])))} if rows else {}
    result = [RevisionProgress(r, docs[r.document_id],
                               db.session.get(Revision, r.revision_id) if r.revision_id else None) for r in rows]
    published = publish.items_of([p.revision for p in result if p.revision is not None])
    by_item = {published[p.revision.id].id: p for p in result
               if p.revision is not None and p.revision.id in published}
    if not by_item:
        return result
    for item_id, status, count in db.session.execute(
            sa.select(TrainingAssignment.item_id, TrainingAssignment.status, sa.func.count())
            .where(TrainingAssignment.item_id.in_(list(by_item)),
                   TrainingAssignment.status != TRAINING_CANCELLED)
            .group_by(TrainingAssignment.item_id, TrainingAssignment.status)):
        item = by_item[item_id]
        item.assigned += count
        if status == TRAINING_COMPLETED:
            item.completed += count
        elif status == TRAINING_OPEN:
            item.open += count
    for assignment, user in db.session.execute(
            sa.select(TrainingAssignment, User).join(User, User.id == TrainingAssignment.user_id)
            .where(TrainingAssignment.item_id.in_(list(by_item)),
                   TrainingAssignment.status != TRAINING_CANCELLED)
            .order_by(TrainingAssignment.due_on, User.full_name)):
        item = by_item[assignment.item_id]
        item.assignments.append((assignment, user))
        if assignment.status == TRAINING_OPEN:
            late = assignment.due_on is not None and assignment.due_on < today
            item.overdue += late
            item.outstanding.append((user, assignment.due_on, late))
    return result


def overdue_changes(today: date | None = None) -> sa.Select:
    """Open change controls with an open task past its due date (the register's overdue view)."""
    today = today or now_utc().date()
    return sa.select(ChangeControl.id).where(
        ChangeControl.status.not_in(FINAL),
        sa.exists().where(ChangeTask.change_id == ChangeControl.id, ChangeTask.status == TASK_OPEN,
                          ChangeTask.due_on < today))


def _closure_blockers(change: ChangeControl) -> tuple[list[str], list[tuple[User, RevisionProgress]]]:
    items = progress(change)
    not_started = [f"{p.document.number} (no revision started)" for p in items if p.revision is None]
    not_in_force = [f"{p.document.number} revision {p.revision.label} ({p.revision.status_label})"
                    for p in items if p.revision is not None and not p.in_force]
    people = [(user, p) for p in items for user, _due, _late in p.outstanding]
    return not_started + not_in_force, people


def _people_text(people: list[tuple[User, RevisionProgress]]) -> str:
    return "; ".join(f"{u.full_name} ({u.username}) on {p.document.number} {p.revision.label}" for u, p in people)



def close(change: ChangeControl, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
          comment: str | None = None) -> ChangeControl:
    """QA signs "Verified" and closes the change, once every linked revision has taken effect and everyone
    assigned those revisions has trained. Refused otherwise, naming what and who is outstanding."""
    return _apply(change, "close", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=comment)


def close_with_open_training(change: ChangeControl, *, actor: User, proof: SignerProof,
                             expected_row_version: int | str | None, justification: str) -> ChangeControl:
    """QA closes the change although people have not trained yet: the signature ("Approved with open training")
    carries the justification and binds the list of outstanding people by its SHA-256; the list itself, never cut,
    is the record's audited `closure_override_note`. The revisions must still have taken effect."""
    return _apply(change, "close-override", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=justification)


def cancel(change: ChangeControl, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           reason: str) -> ChangeControl:
    """QA cancels the change from any state but Closed, signing "Cancelled" with the reason. Draft revisions already
    started stay with their documents (their authors finish or withdraw them through document control)."""
    return _apply(change, "cancel", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=reason)


# --- what each step checks and writes ---------------------------------------------------------------------------------


def _check_start(act: Act) -> None:
    if act.record.documents:
        require(act.actor, "documents.author", "Starting the draft revisions of the affected documents")


def _start_drafts(act: Act) -> None:
    change, actor = act.record, act.actor
    summary = f"{change.number}: {change.title}"
    reason = f"Change control {change.number} (approved): {change.justification}"[:4000]
    started: list[tuple[ChangeDocument, Revision]] = []
    for row in sorted(change.documents, key=lambda r: r.document_id):
        document = db.session.get(Document, row.document_id)
        latest = documents.latest_revision(document)
        content = {"content_markdown": f"# {document.title}\n\nDraft started from change control {change.number}.\n"}
        if latest is not None and latest.content_format == "pdf":
            content = {"pdf_bytes": latest.content_pdf, "pdf_filename": latest.content_filename}
        elif latest is not None and (latest.content_markdown or "").strip():
            content = {"content_markdown": latest.content_markdown}
        revision = documents.start_revision(document, author=actor, major=act.values.get("major", True),
                                            change_summary=summary, reason=reason, **content)
        started.append((row, revision))
    with db.session.no_autoflush:
        for row, revision in started:
            row.revision_id = revision.id


def _check_tasks_done(act: Act) -> None:
    waiting = [t for t in act.record.tasks if t.status == TASK_OPEN]
    if waiting:
        raise InvalidTransition(f"{act.record.audit_title()} still has open tasks: "
                                f"{'; '.join(f'{t.title} ({t.owner.full_name})' for t in waiting)}.")


def _check_closable(act: Act) -> None:
    change = act.record
    revisions, people = _closure_blockers(change)
    if revisions:
        raise InvalidTransition(f"{change.audit_title()} cannot close: not yet effective: {'; '.join(revisions)}.")
    if people:
        shown = _people_text(people[:50]) + (f"; … and {len(people) - 50} more" if len(people) > 50 else "")
        raise InvalidTransition(f"{change.audit_title()} cannot close: {len(people)} training assignment(s) are "
                                f"still open: {shown}. QA may close it with open training by signing a "
                                f"justification.")


def _check_override(act: Act) -> None:
    change = act.record
    revisions, people = _closure_blockers(change)
    if revisions:
        raise InvalidTransition(f"{change.audit_title()} cannot close: not yet effective: {'; '.join(revisions)}.")
    if not people:
        raise InvalidTransition(f"Everyone assigned the revisions of {change.audit_title()} has trained: close it "
                                f"with a “Verified” signature instead.")
    act.data["names"], act.data["count"] = _people_text(people), len(people)


def _override_comment(act: Act) -> str:
    listed = hashlib.sha256(act.data["names"].encode("utf-8")).hexdigest()
    return (f"{act.text} — {act.data['count']} open training assignment(s), named in the closure note "
            f"(SHA-256 of the list {listed})")


def _closed(act: Act) -> None:
    act.record.closed_at = now_utc()


def _closed_with_open_training(act: Act) -> None:
    act.record.closure_override_note = f"{act.text} — not yet trained ({act.data['count']}): {act.data['names']}"
    act.record.closed_at = now_utc()


OWNER = only("owner_id", "the owner only",
             lambda change: f"Only the owner of {change.audit_title()} ({change.owner.full_name}) can submit it.")
NOT_OWNER = never("owner_id", "not the owner (segregation of duties)",
                  lambda change: f"Segregation of duties: the owner of {change.audit_title()} cannot also approve, "
                                 f"verify, override or cancel it: another QA approver must.")

LIFECYCLE = Lifecycle(
    "change_control", title="Change control", model=ChangeControl, noun="change control", labels=STATUS_LABELS,
    initial=DRAFT, summary=lambda change: f"{change.number} — {change.title} ({change.status_label})",
    describe="""Raised in Draft by a quality manager, who owns it. The owner signs its submission; another QA
    approver approves it, closes it and may cancel it. Starting the implementation opens a draft revision of each
    affected document; closure waits until those revisions are effective and their training is complete, unless QA
    signs a justification naming the people outstanding.""",
    transitions=[
        Transition("submit", "Submit for QA approval…", (DRAFT,), SUBMITTED, "quality.manage", sig.AUTHORED,
                   rules=(OWNER,), task="Submitting a change control", verb="submit",
                   confirm="Sign and submit for QA approval", audit_reason="Submitted for QA approval",
                   effect=lambda act: setattr(act.record, "submitted_at", now_utc())),
        Transition("approve", "Approve…", (SUBMITTED,), APPROVED, "quality.approve", sig.APPROVED, text=comment(),
                   rules=(NOT_OWNER,), task="Approving a change control", verb="approve", confirm="Sign and approve",
                   audit_reason="Approved by QA", effect=lambda act: setattr(act.record, "approved_at", now_utc())),
        Transition("reject", "Reject…", (SUBMITTED,), DRAFT, "quality.approve", sig.REJECTED,
                   text=required_comment("A comment explaining the rejection",
                                         help="Required when you reject: say what must change."),
                   rules=(NOT_OWNER,), task="Rejecting a change control", verb="reject", confirm="Sign and reject",
                   style="outline-danger", audit_reason=lambda act: f"Rejected: {act.text}",
                   effect=lambda act: setattr(act.record, "submitted_at", None)),
        Transition("start", "Start implementation (start the documents' drafts)", (APPROVED,), IMPLEMENTATION,
                   "quality.manage", task="Starting the implementation of a change control",
                   verb="start the implementation of", check=_check_start, after=_start_drafts,
                   audit_reason=lambda act: f"Implementation of {act.record.number} started",
                   done=lambda act: f"Implementation of {act.record.number} started; the affected documents' draft "
                                    f"revisions are open."),
        Transition("verification", "Implementation complete: to verification", (IMPLEMENTATION,), VERIFICATION,
                   "quality.manage", task="Moving a change control to verification", verb="move to verification",
                   check=_check_tasks_done, audit_reason="Implementation complete; verification",
                   done=lambda act: f"{act.record.number} is in verification."),
        Transition("close", "Verify and close…", (VERIFICATION,), CLOSED, "quality.approve", sig.VERIFIED,
                   text=comment(), rules=(NOT_OWNER,), task="Closing a change control", verb="close",
                   confirm="Sign as verified and close", check=_check_closable, effect=_closed,
                   audit_reason="Verified and closed"),
        Transition("close-override", "Close with open training…", (VERIFICATION,), CLOSED, "quality.approve",
                   sig.APPROVED_DESPITE_TRAINING,
                   text=justification("Justification", what="A justification", limit=1500, min_length=4,
                                      help="Why the change is closed before everyone has trained."),
                   rules=(NOT_OWNER,), task="Closing a change control with open training", verb="close",
                   confirm="Sign and close with open training", style="outline-warning", check=_check_override,
                   signature_comment=_override_comment, effect=_closed_with_open_training,
                   audit_reason=lambda act: f"Closed with open training: {act.text}"),
        Transition("cancel", "Cancel change…", tuple(s for s in STATUS_LABELS if s not in FINAL), CANCELLED,
                   "quality.approve", sig.CANCELLED,
                   text=justification("Justification", what="A reason for cancelling", limit=1900, min_length=4,
                                      help="Why the change is cancelled."),
                   rules=(NOT_OWNER,), task="Cancelling a change control", verb="cancel",
                   confirm="Sign and cancel the change", style="outline-danger",
                   audit_reason=lambda act: f"Cancelled: {act.text}",
                   effect=lambda act: setattr(act.record, "cancelled_reason", act.text)),
    ])
