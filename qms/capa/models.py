"""CAPA: a problem, its root cause, corrective and preventive actions (retraining among them) and an effectiveness
check. A retraining action names people and/or job functions and documents; approving it creates the training
assignments through the training engine in the same transaction, each linked back to the action."""

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
OPEN = "open"  # approved plan: actions being carried out
EFFECTIVENESS = "effectiveness_check"
CLOSED = "closed"
CANCELLED = "cancelled"
STATUS_LABELS = {DRAFT: "Draft", OPEN: "Open (actions in progress)", EFFECTIVENESS: "Effectiveness check",
                 CLOSED: "Closed", CANCELLED: "Cancelled"}

SOURCE_TYPES = {"deviation": "Deviation", "audit_finding": "Audit finding", "complaint": "Complaint",
                "change_control": "Change control", "other": "Other"}

CORRECTIVE = "corrective"
PREVENTIVE = "preventive"
ACTION_KINDS = {CORRECTIVE: "Corrective", PREVENTIVE: "Preventive"}
ACTION_PLANNED = "planned"
ACTION_APPROVED = "approved"
ACTION_DONE = "done"
ACTION_CANCELLED = "cancelled"
ACTION_STATUS_LABELS = {ACTION_PLANNED: "Planned", ACTION_APPROVED: "Approved", ACTION_DONE: "Done",
                        ACTION_CANCELLED: "Cancelled"}


@register
class Capa(QualityRecord, Versioned, db.Model):
    __tablename__ = "qms_capa"
    __table_args__ = table_args()
    __audit_label__ = "CAPA"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, info={"label": "Number"})
    title: Mapped[str] = mapped_column(sa.String(300), info={"label": "Title"})
    source_type: Mapped[str] = mapped_column(sa.String(32), info={"label": "Source"})
    source_id: Mapped[int | None] = mapped_column(info={"label": "Source record"})
    source_reference: Mapped[str | None] = mapped_column(sa.String(200), info={"label": "Source reference"})
    problem_statement: Mapped[str] = mapped_column(sa.Text, info={"label": "Problem statement"})
    root_cause: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Root cause"})
    status: Mapped[str] = mapped_column(sa.String(24), default=DRAFT, index=True, info={"label": "Status"})
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    approved_at: Mapped[datetime | None] = mapped_column(info={"label": "Approved at"})
    effectiveness_due_on: Mapped[date | None] = mapped_column(info={"label": "Effectiveness check due"})
    effectiveness_result: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Effectiveness result"})
    effective: Mapped[bool | None] = mapped_column(info={"label": "Effective"})
    closed_at: Mapped[datetime | None] = mapped_column(info={"label": "Closed at"})
    cancelled_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason cancelled"})
    row_version: Mapped[int] = mapped_column(default=1, info={"label": "Row version"})

    __mapper_args__ = {"version_id_col": row_version}

    actions: Mapped[list[CapaAction]] = relationship(back_populates="capa", order_by="CapaAction.id")
    owner = relationship("User")

    signable_type = "qms_capa"
    allowed_meanings = (sig.AUTHORED, sig.APPROVED, sig.VERIFIED, sig.REJECTED, sig.CANCELLED)
    signed_fields = ("title", "source_type", "source_id", "source_reference", "problem_statement", "root_cause",
                     "effectiveness_due_on", "effectiveness_result", "effective")
    status_labels = STATUS_LABELS

    def audit_title(self) -> str:
        return f"CAPA {self.number}"


class CapaAction(Versioned, db.Model):
    """A corrective or preventive action. A retraining action also names documents and people and/or job functions;
    its approval assigns the training (source "capa_action", linked to this action)."""

    __tablename__ = "qms_capa_action"
    __table_args__ = table_args()
    __audit_label__ = "CAPA action"

    id: Mapped[int] = mapped_column(primary_key=True)
    capa_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_capa.id"), index=True, info={"label": "CAPA"})
    kind: Mapped[str] = mapped_column(sa.String(16), info={"label": "Kind"})
    description: Mapped[str] = mapped_column(sa.Text, info={"label": "Description"})
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    due_on: Mapped[date] = mapped_column(info={"label": "Due on"})
    status: Mapped[str] = mapped_column(sa.String(16), default=ACTION_PLANNED, info={"label": "Status"})
    retraining: Mapped[bool] = mapped_column(default=False, info={"label": "Retraining action"})
    evidence: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Evidence"})
    approved_at: Mapped[datetime | None] = mapped_column(info={"label": "Approved at"})
    completed_at: Mapped[datetime | None] = mapped_column(info={"label": "Completed at"})

    capa: Mapped[Capa] = relationship(back_populates="actions")
    owner = relationship("User")
    documents: Mapped[list[CapaActionDocument]] = relationship(cascade="all, delete-orphan")
    people: Mapped[list[CapaActionPerson]] = relationship(cascade="all, delete-orphan")
    job_functions: Mapped[list[CapaActionJobFunction]] = relationship(cascade="all, delete-orphan")

    def audit_title(self) -> str:
        number = self.capa.number if self.capa is not None else f"CAPA {self.capa_id}"
        return f"{number} action {self.id}"


class CapaActionDocument(Versioned, db.Model):
    __tablename__ = "qms_capa_action_document"
    __table_args__ = table_args(sa.UniqueConstraint("action_id", "document_id"))
    __audit_label__ = "Retraining document"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_capa_action.id"), index=True, info={"label": "Action"})
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document.id"), index=True,
                                             info={"label": "Document"})


class CapaActionPerson(Versioned, db.Model):
    __tablename__ = "qms_capa_action_person"
    __table_args__ = table_args(sa.UniqueConstraint("action_id", "user_id"))
    __audit_label__ = "Person to retrain"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_capa_action.id"), index=True, info={"label": "Action"})
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Person"})


class CapaActionJobFunction(Versioned, db.Model):
    __tablename__ = "qms_capa_action_job_function"
    __table_args__ = table_args(sa.UniqueConstraint("action_id", "job_function_id"))
    __audit_label__ = "Job function to retrain"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_capa_action.id"), index=True, info={"label": "Action"})
    job_function_id: Mapped[int] = mapped_column(sa.ForeignKey("core_job_function.id"), index=True,
                                                 info={"label": "Job function"})
