"""Training records: who holds which job function when, and version-specific training assignments."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

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
SOURCE_LABELS = {SOURCE_REVISION_APPROVAL: "Revision approved", SOURCE_JOB_FUNCTION: "Job function granted",
                 SOURCE_MATRIX: "Training matrix requirement", SOURCE_RECURRENCE: "Periodic retraining",
                 SOURCE_MANUAL: "Assigned by a coordinator", SOURCE_IMPORT: "HR import",
                 SOURCE_CAPA_ACTION: "CAPA retraining action", SOURCE_CHANGE_CONTROL: "Change control"}


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


class TrainingAssignment(Versioned, db.Model):
    """One person must train on one exact revision. Training on revision 2 never counts for revision 3: each
    revision has its own assignments, one per person and cycle (enforced by a unique constraint). Cycle 0 is the
    first training on the revision; periodic retraining on the same revision is cycle 1, 2, ..."""

    __tablename__ = "training_assignment"
    __table_args__ = table_args(sa.UniqueConstraint("user_id", "revision_id", "cycle"),
                                sa.Index("ix_training_assignment_open", "status", "due_on"))
    __audit_label__ = "Training assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Trainee"})
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document.id"), index=True,
                                             info={"label": "Document"})
    revision_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document_revision.id"), index=True,
                                             info={"label": "Revision"})
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

    def audit_title(self) -> str:
        return f"Training assignment {self.id}"
