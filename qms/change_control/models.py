"""A change control record. Affected documents get new draft revisions started from it and linked to it; closing is
refused until every linked revision is effective and the training it created is complete (or QA signs a
justification naming the people outstanding)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import now_utc
from core.db import Versioned, db, table_args
from qms.quality_common import QualityRecord
from signatures import models as sig
from signatures.services import register

DRAFT = "draft"
SUBMITTED = "submitted"
APPROVED = "approved"
IMPLEMENTATION = "implementation"
VERIFICATION = "verification"
CLOSED = "closed"
CANCELLED = "cancelled"
STATUS_LABELS = {DRAFT: "Draft", SUBMITTED: "Submitted", APPROVED: "Approved", IMPLEMENTATION: "In implementation",
                 VERIFICATION: "Verification", CLOSED: "Closed", CANCELLED: "Cancelled"}
CHANGE_TYPES = {"document": "Documents only", "process": "Process", "equipment": "Equipment / facility",
                "system": "Computerised system", "material": "Material / supplier", "other": "Other"}
RISK_LEVELS = {"low": "Low", "medium": "Medium", "high": "High"}
TASK_OPEN = "open"
TASK_DONE = "done"
TASK_CANCELLED = "cancelled"
TASK_STATUS_LABELS = {TASK_OPEN: "Open", TASK_DONE: "Done", TASK_CANCELLED: "Cancelled"}


@register
class ChangeControl(QualityRecord, Versioned, db.Model):
    __tablename__ = "qms_change_control"
    __table_args__ = table_args()
    __audit_label__ = "Change control"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, info={"label": "Number"})
    title: Mapped[str] = mapped_column(sa.String(300), info={"label": "Title"})
    description: Mapped[str] = mapped_column(sa.Text, info={"label": "Description"})
    justification: Mapped[str] = mapped_column(sa.Text, info={"label": "Justification"})
    change_type: Mapped[str] = mapped_column(sa.String(16), info={"label": "Change type"})
    risk_level: Mapped[str] = mapped_column(sa.String(8), info={"label": "Risk level"})
    risk_rationale: Mapped[str] = mapped_column(sa.Text, info={"label": "Risk rationale"})
    status: Mapped[str] = mapped_column(sa.String(16), default=DRAFT, index=True, info={"label": "Status"})
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    submitted_at: Mapped[datetime | None] = mapped_column(info={"label": "Submitted at"})
    approved_at: Mapped[datetime | None] = mapped_column(info={"label": "Approved at"})
    closed_at: Mapped[datetime | None] = mapped_column(info={"label": "Closed at"})
    closure_override_note: Mapped[str | None] = mapped_column(
        sa.Text, info={"label": "Closed with open training (justification and people)"})
    cancelled_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason cancelled"})
    row_version: Mapped[int] = mapped_column(default=1, info={"label": "Row version"})

    __mapper_args__ = {"version_id_col": row_version}

    documents: Mapped[list[ChangeDocument]] = relationship(cascade="all, delete-orphan")
    job_functions: Mapped[list[ChangeJobFunction]] = relationship(cascade="all, delete-orphan")
    tasks: Mapped[list[ChangeTask]] = relationship(back_populates="change", order_by="ChangeTask.id")
    owner = relationship("User")

    signable_type = "qms_change_control"
    allowed_meanings = (sig.AUTHORED, sig.APPROVED, sig.VERIFIED, sig.REJECTED, sig.APPROVED_DESPITE_TRAINING,
                        sig.CANCELLED)
    signed_fields = ("title", "description", "justification", "change_type", "risk_level", "risk_rationale",
                     "closure_override_note")
    status_labels = STATUS_LABELS

    def audit_title(self) -> str:
        return f"Change control {self.number}"


class ChangeDocument(Versioned, db.Model):
    """A document the change affects; `revision_id` is the draft revision started from the change, once started."""

    __tablename__ = "qms_change_document"
    __table_args__ = table_args(sa.UniqueConstraint("change_id", "document_id"))
    __audit_label__ = "Affected document"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_change_control.id"), index=True,
                                           info={"label": "Change control"})
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document.id"), index=True,
                                             info={"label": "Document"})
    revision_id: Mapped[int | None] = mapped_column(sa.ForeignKey("qms_document_revision.id"), index=True,
                                                    info={"label": "Revision started"})


class ChangeJobFunction(Versioned, db.Model):
    __tablename__ = "qms_change_job_function"
    __table_args__ = table_args(sa.UniqueConstraint("change_id", "job_function_id"))
    __audit_label__ = "Affected job function"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_change_control.id"), index=True,
                                           info={"label": "Change control"})
    job_function_id: Mapped[int] = mapped_column(sa.ForeignKey("core_job_function.id"), index=True,
                                                 info={"label": "Job function"})


class ChangeTask(Versioned, db.Model):
    __tablename__ = "qms_change_task"
    __table_args__ = table_args()
    __audit_label__ = "Implementation task"

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_change_control.id"), index=True,
                                           info={"label": "Change control"})
    title: Mapped[str] = mapped_column(sa.String(300), info={"label": "Task"})
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    due_on: Mapped[date] = mapped_column(info={"label": "Due on"})
    status: Mapped[str] = mapped_column(sa.String(16), default=TASK_OPEN, info={"label": "Status"})
    completed_at: Mapped[datetime | None] = mapped_column(info={"label": "Completed at"})
    note: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Note"})

    change: Mapped[ChangeControl] = relationship(back_populates="tasks")
    owner = relationship("User")

    def audit_title(self) -> str:
        number = self.change.number if self.change is not None else f"change {self.change_id}"
        return f"{number} task {self.id}"
