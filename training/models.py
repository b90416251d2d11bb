"""What is trained, who must train on it, and who has: the training package's own tables.

- A **subject** (`TrainingSubject`) is the stable key of something people train on: kind and key, e.g. the document
  `SOP-QA-001`, with its title and the owner's defaults (days allowed, minimum reading time). Requirements point at it,
  so they hold for every version.
- A **training item** (`TrainingItem`) is one trainable version of a subject: a document revision today (later a course
  version, an instructor-led class, a checklist, an external certificate). It carries its version label, whether the
  change was major, when it was published (approved), took effect, was superseded or retired, the method it needs
  (read-and-sign) and the link where its owner shows its content. Training on one item never counts for the next.
- A **requirement** (`TrainingRequirement`, a cell of the training matrix) says who must train on a subject: a target
  (a job function today; departments, sites and people are further target types, rows rather than code paths), every
  change or major changes only, a retraining interval, days allowed, dates of validity and a reason.
- An **assignment** (`TrainingAssignment`) is one person's training on one exact item, one row per cycle.

No table here refers to a qms or lms table: the packages above publish their versions into training by explicit calls
(qms.documents.publish) and find their items again by `source_type`/`source_id`.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import now_utc
from core.db import Versioned, db, table_args

OPEN = "open"
COMPLETED = "completed"
CANCELLED = "cancelled"
SUPERSEDED = "superseded"
STATUS_LABELS = {OPEN: "Open", COMPLETED: "Completed", CANCELLED: "Cancelled", SUPERSEDED: "Superseded"}

SOURCE_REVISION_APPROVAL = "revision_approval"
SOURCE_JOB_FUNCTION = "job_function"
SOURCE_MATRIX = "matrix"
SOURCE_RECURRENCE = "recurrence"
SOURCE_MANUAL = "manual"
SOURCE_IMPORT = "hris_import"
SOURCE_CAPA_ACTION = "capa_action"
SOURCE_CHANGE_CONTROL = "change_control"
SOURCE_LABELS = {SOURCE_REVISION_APPROVAL: "New version approved", SOURCE_JOB_FUNCTION: "Job function granted",
                 SOURCE_MATRIX: "Training matrix requirement", SOURCE_RECURRENCE: "Periodic retraining",
                 SOURCE_MANUAL: "Assigned by a coordinator", SOURCE_IMPORT: "HR import",
                 SOURCE_CAPA_ACTION: "CAPA retraining action", SOURCE_CHANGE_CONTROL: "Change control"}

# kinds of subject, and the word for one of their versions
KIND_DOCUMENT = "document"
KINDS = {KIND_DOCUMENT: "Controlled document"}
VERSION_NOUNS = {KIND_DOCUMENT: "revision"}

# how an item is trained
METHOD_READ_AND_SIGN = "read_and_sign"
METHODS = {METHOD_READ_AND_SIGN: "Read and sign"}

# who a requirement targets
TARGET_JOB_FUNCTION = "job_function"
TARGET_TYPES = {TARGET_JOB_FUNCTION: "Job function"}

# retraining policy of a requirement
RETRAIN_EVERY = "every"
RETRAIN_MAJOR = "major"
RETRAIN_POLICIES = {RETRAIN_EVERY: "Every revision", RETRAIN_MAJOR: "Major revisions only"}

# the migration that moved the training data out of the quality tables (retired columns are named after it)
MOVED_IN = "migration 0011"


class UserJobFunction(Versioned, db.Model):
    """A user holds a job function from `valid_from` until the day before `valid_to` (open-ended when None)."""

    __tablename__ = "training_user_job_function"
    __table_args__ = table_args()
    __audit_label__ = "Job function held"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "User"})
    job_function_id: Mapped[int] = mapped_column(sa.ForeignKey("core_job_function.id"), index=True,
                                                 info={"label": "Job function"})
    valid_from: Mapped[date] = mapped_column(info={"label": "Held from"})
    valid_to: Mapped[date | None] = mapped_column(info={"label": "Held until (exclusive)"})

    def audit_title(self) -> str:
        return f"Job function {self.job_function_id} held by user {self.user_id}"


class TrainingSubject(Versioned, db.Model):
    """The stable key every version of one trainable thing shares (e.g. document SOP-QA-001)."""

    __tablename__ = "training_subject"
    __table_args__ = table_args(sa.UniqueConstraint("kind", "key"))
    __audit_label__ = "Training subject"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32), info={"label": "Kind"})
    key: Mapped[str] = mapped_column(sa.String(64), index=True, info={"label": "Key"})
    title: Mapped[str] = mapped_column(sa.String(300), info={"label": "Title"})
    category: Mapped[str | None] = mapped_column(sa.String(32), info={"label": "Category"})
    department_id: Mapped[int | None] = mapped_column(sa.ForeignKey("core_department.id"), index=True,
                                                      info={"label": "Owning department"})
    page_url: Mapped[str | None] = mapped_column(sa.String(500), info={"label": "Page"})
    days_allowed: Mapped[int] = mapped_column(default=14, info={"label": "Days allowed (default)"})
    min_read_seconds: Mapped[int] = mapped_column(default=0, info={"label": "Minimum reading time (seconds)"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})

    items: Mapped[list[TrainingItem]] = relationship(back_populates="subject", order_by="TrainingItem.id")
    department = relationship("Department")

    @property
    def kind_label(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def version_noun(self) -> str:
        return VERSION_NOUNS.get(self.kind, "version")

    def audit_title(self) -> str:
        return f"Training subject {self.key}"


class TrainingItem(Versioned, db.Model):
    """One trainable version of a subject. Its times are facts of the owner's record (approval, taking effect,
    replacement, retirement), written by the owner's explicit calls in the same transaction."""

    __tablename__ = "training_item"
    __table_args__ = table_args(sa.UniqueConstraint("subject_id", "version_major", "version_minor"),
                                sa.UniqueConstraint("source_type", "source_id"))
    __audit_label__ = "Training item"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("training_subject.id"), index=True,
                                            info={"label": "Subject"})
    version_label: Mapped[str] = mapped_column(sa.String(32), info={"label": "Version"})
    version_major: Mapped[int] = mapped_column(info={"label": "Major version"})
    version_minor: Mapped[int] = mapped_column(info={"label": "Minor version"})
    major_change: Mapped[bool] = mapped_column(info={"label": "Major change"})
    method: Mapped[str] = mapped_column(sa.String(32), default=METHOD_READ_AND_SIGN, info={"label": "Method"})
    content_url: Mapped[str] = mapped_column(sa.String(500), info={"label": "Content link"})
    content_type: Mapped[str] = mapped_column(sa.String(64), info={"label": "Content type"})
    source_type: Mapped[str] = mapped_column(sa.String(64), info={"label": "Source record type"})
    source_id: Mapped[int] = mapped_column(info={"label": "Source record"})
    published_at: Mapped[datetime] = mapped_column(info={"label": "Published (approved) at"})
    effective_on: Mapped[date | None] = mapped_column(info={"label": "Effective date"})
    effective_at: Mapped[datetime | None] = mapped_column(info={"label": "Took effect at"})
    superseded_at: Mapped[datetime | None] = mapped_column(info={"label": "Superseded at"})
    retired_at: Mapped[datetime | None] = mapped_column(info={"label": "Retired at"})
    retired_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason retired"})

    subject: Mapped[TrainingSubject] = relationship(back_populates="items")

    @property
    def label(self) -> str:
        return self.version_label

    @property
    def in_use(self) -> bool:
        """Published and neither superseded nor retired: people train on it now."""
        return self.superseded_at is None and self.retired_at is None

    @property
    def title(self) -> str:
        return f"{self.subject.key} {self.subject.version_noun} {self.version_label}"

    @property
    def state_label(self) -> str:
        if self.retired_at is not None:
            return "Retired"
        if self.superseded_at is not None:
            return "Superseded"
        return "In effect" if self.effective_at is not None else "Published (not yet in effect)"

    def audit_title(self) -> str:
        subject = self.subject
        return f"Training item {subject.key} {self.version_label}" if subject is not None else \
            f"Training item {self.id}"


class TrainingRequirement(Versioned, db.Model):
    """A cell of the training matrix: the target's members must train on the subject (always on its current item),
    again on every change or on major changes only, every `recurrence_months` if set, within `days_allowed` of being
    assigned (else the subject's default), while the requirement is valid (from `valid_from`, until the day before
    `valid_to`).

    Migration 0011 moved it from `qms_document_audience`: the version table keeps that table's history under its
    first name, and the columns the move removed (`document_id`, `job_function_id`) for the versions before it."""

    __tablename__ = "training_requirement"
    __table_args__ = table_args(sa.UniqueConstraint("subject_id", "target_type", "target_id"))
    __audit_label__ = "Training requirement"
    __allow_delete__ = True
    __audit_chain_label__ = "qms_document_audience_version"
    __audit_former_tables__ = ("qms_document_audience",)
    __audit_retired__ = {"document_id": (sa.Integer, f"Document id (before {MOVED_IN})"),
                         "job_function_id": (sa.Integer, f"Job function id (before {MOVED_IN})")}

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("training_subject.id"), index=True,
                                            info={"label": "Subject"})
    target_type: Mapped[str] = mapped_column(sa.String(16), info={"label": "Target type"})
    target_id: Mapped[int] = mapped_column(info={"label": "Target"})
    retrain: Mapped[str] = mapped_column(sa.String(8), default=RETRAIN_EVERY, server_default=RETRAIN_EVERY,
                                         info={"label": "Retrain on"})
    recurrence_months: Mapped[int | None] = mapped_column(info={"label": "Retrain every (months)"})
    days_allowed: Mapped[int | None] = mapped_column(info={"label": "Days allowed for a new assignee"})
    valid_from: Mapped[date | None] = mapped_column(info={"label": "Valid from"})
    valid_to: Mapped[date | None] = mapped_column(info={"label": "Valid until (exclusive)"})
    reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Why it is required"})

    subject: Mapped[TrainingSubject] = relationship()

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or self.valid_to > day)

    def audit_title(self) -> str:
        key = self.subject.key if self.subject is not None else f"subject {self.subject_id}"
        return f"Training requirement {key}"


def requirement_valid_on(day: date) -> sa.ColumnElement[bool]:
    """SQL: the requirement is valid on `day`."""
    r = TrainingRequirement
    return sa.and_(sa.or_(r.valid_from.is_(None), r.valid_from <= day), sa.or_(r.valid_to.is_(None), r.valid_to > day))


class TrainingAssignment(Versioned, db.Model):
    """One person must train on one exact item. Training on revision 2 never counts for revision 3: each item has its
    own assignments, one per person and cycle (a unique constraint). Cycle 0 is the first training on the item;
    periodic retraining on the same item is cycle 1, 2, ...

    Before migration 0011 an assignment named its document and revision; its version table keeps those columns."""

    __tablename__ = "training_assignment"
    __table_args__ = table_args(sa.UniqueConstraint("user_id", "item_id", "cycle"),
                                sa.Index("ix_training_assignment_open", "status", "due_on"))
    __audit_label__ = "Training assignment"
    __audit_retired__ = {"document_id": (sa.Integer, f"Document id (before {MOVED_IN})"),
                         "revision_id": (sa.Integer, f"Revision id (before {MOVED_IN})")}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Trainee"})
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("training_subject.id"), index=True,
                                            info={"label": "Subject"})
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("training_item.id"), index=True, info={"label": "Item"})
    cycle: Mapped[int] = mapped_column(default=0, server_default="0", info={"label": "Training cycle"})
    status: Mapped[str] = mapped_column(sa.String(16), default=OPEN, info={"label": "Status"})
    source_type: Mapped[str] = mapped_column(sa.String(32), info={"label": "Source"})
    source_id: Mapped[int | None] = mapped_column(info={"label": "Source record"})
    due_on: Mapped[date | None] = mapped_column(info={"label": "Due on"})
    assigned_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Assigned at"})
    opened_at: Mapped[datetime | None] = mapped_column(info={"label": "First opened at"})
    completed_at: Mapped[datetime | None] = mapped_column(info={"label": "Completed at"})
    signature_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sig_signature.id"),
                                                     info={"label": "Completion signature"})
    closed_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason closed"})
    assigned_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason assigned"})

    item: Mapped[TrainingItem] = relationship()
    subject: Mapped[TrainingSubject] = relationship()

    def audit_title(self) -> str:
        return f"Training assignment {self.id}"
