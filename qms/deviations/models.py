"""A deviation: an event that departed from an approved procedure. The training adequacy of the people involved is
computed from the history (training.qualification), never typed, so it only needs the people, the documents and when the
deviation occurred."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import now_utc
from core.db import Versioned, db, table_args
from qms.quality_common import QualityRecord
from signatures import models as sig
from signatures.services import register

OPEN = "open"
INVESTIGATION = "investigation"
PENDING_APPROVAL = "pending_approval"
CLOSED = "closed"
CANCELLED = "cancelled"
STATUS_LABELS = {OPEN: "Open", INVESTIGATION: "Under investigation", PENDING_APPROVAL: "Pending QA approval",
                 CLOSED: "Closed", CANCELLED: "Cancelled"}
CLASSIFICATIONS = {"minor": "Minor", "major": "Major", "critical": "Critical"}
ROOT_CAUSE_CATEGORIES = {"training": "Training", "procedure": "Procedure", "equipment": "Equipment",
                         "material": "Material", "human_error": "Human error", "other": "Other"}


@register
class Deviation(QualityRecord, Versioned, db.Model):
    __tablename__ = "qms_deviation"
    __table_args__ = table_args()
    __audit_label__ = "Deviation"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, info={"label": "Number"})
    title: Mapped[str] = mapped_column(sa.String(300), info={"label": "Title"})
    occurred_at: Mapped[datetime] = mapped_column(info={"label": "Occurred at"})
    discovered_at: Mapped[datetime] = mapped_column(info={"label": "Discovered at"})
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("core_site.id"), index=True, info={"label": "Site"})
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("core_department.id"), index=True,
                                               info={"label": "Department"})
    area: Mapped[str | None] = mapped_column(sa.String(200), info={"label": "Area / equipment"})
    description: Mapped[str] = mapped_column(sa.Text, info={"label": "Description"})
    immediate_actions: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Immediate actions"})
    classification: Mapped[str | None] = mapped_column(sa.String(16), info={"label": "Classification"})
    classification_justification: Mapped[str | None] = mapped_column(
        sa.Text, info={"label": "Classification justification"})
    investigation: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Investigation"})
    root_cause: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Root cause"})
    root_cause_category: Mapped[str | None] = mapped_column(sa.String(16), info={"label": "Root cause category"})
    status: Mapped[str] = mapped_column(sa.String(24), default=OPEN, index=True, info={"label": "Status"})
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    capa_id: Mapped[int | None] = mapped_column(sa.ForeignKey("qms_capa.id"), index=True, info={"label": "CAPA"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    closed_at: Mapped[datetime | None] = mapped_column(info={"label": "Closed at"})
    cancelled_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason cancelled"})
    row_version: Mapped[int] = mapped_column(default=1, info={"label": "Row version"})

    __mapper_args__ = {"version_id_col": row_version}

    people: Mapped[list[DeviationPerson]] = relationship(cascade="all, delete-orphan")
    documents: Mapped[list[DeviationDocument]] = relationship(cascade="all, delete-orphan")
    owner = relationship("User")
    capa = relationship("Capa")

    signable_type = "qms_deviation"
    allowed_meanings = (sig.AUTHORED, sig.APPROVED, sig.REJECTED)
    signed_fields = ("title", "occurred_at", "discovered_at", "site_id", "department_id", "area", "description",
                     "immediate_actions", "classification", "classification_justification", "investigation",
                     "root_cause", "root_cause_category", "capa_id")
    status_labels = STATUS_LABELS

    def audit_title(self) -> str:
        return f"Deviation {self.number}"


class DeviationPerson(Versioned, db.Model):
    __tablename__ = "qms_deviation_person"
    __table_args__ = table_args(sa.UniqueConstraint("deviation_id", "user_id"))
    __audit_label__ = "Person involved"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    deviation_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_deviation.id"), index=True,
                                              info={"label": "Deviation"})
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Person"})


class DeviationDocument(Versioned, db.Model):
    __tablename__ = "qms_deviation_document"
    __table_args__ = table_args(sa.UniqueConstraint("deviation_id", "document_id"))
    __audit_label__ = "Procedure concerned"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    deviation_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_deviation.id"), index=True,
                                              info={"label": "Deviation"})
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document.id"), index=True,
                                             info={"label": "Document"})
