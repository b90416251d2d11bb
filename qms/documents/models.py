"""Controlled documents and their revisions. Invariants live here as methods; services orchestrate, views render."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import now_utc
from core.db import Versioned, db, table_args
from signatures import models as sig
from signatures.services import register

DOC_TYPES = {
    "SOP": "Standard operating procedure",
    "WI": "Work instruction",
    "FORM": "Form",
    "POL": "Policy",
    "SPEC": "Specification",
}

DRAFT = "draft"
IN_REVIEW = "in_review"
APPROVED = "approved"
EFFECTIVE = "effective"
SUPERSEDED = "superseded"
OBSOLETE = "obsolete"
STATUS_LABELS = {DRAFT: "Draft", IN_REVIEW: "In review", APPROVED: "Approved (pending effective)",
                 EFFECTIVE: "Effective", SUPERSEDED: "Superseded", OBSOLETE: "Obsolete"}

REVIEW = "review"
APPROVE = "approve"

# release policy per document
RELEASE_ON_DATE = "on_date"
RELEASE_WHEN_TRAINED = "when_trained"
RELEASE_POLICIES = {RELEASE_ON_DATE: "Effective on the date (untrained people are not qualified)",
                    RELEASE_WHEN_TRAINED: "Effective when trained (release held until every assignee has trained)"}

class Document(Versioned, db.Model):
    __tablename__ = "qms_document"
    __table_args__ = table_args()
    __audit_label__ = "Document"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(40), unique=True, info={"label": "Number"})
    title: Mapped[str] = mapped_column(sa.String(300), info={"label": "Title"})
    doc_type: Mapped[str] = mapped_column(sa.String(16), info={"label": "Type"})
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("core_department.id"), index=True,
                                               info={"label": "Owning department"})
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    review_interval_months: Mapped[int] = mapped_column(default=24, info={"label": "Periodic review interval (months)"})
    training_window_days: Mapped[int] = mapped_column(default=14, info={"label": "Training window (days)"})
    min_read_seconds: Mapped[int] = mapped_column(default=0, server_default="0",
                                                  info={"label": "Minimum reading time (seconds)"})
    release_policy: Mapped[str] = mapped_column(sa.String(16), default=RELEASE_ON_DATE, server_default=RELEASE_ON_DATE,
                                                info={"label": "Release policy"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})

    revisions: Mapped[list[Revision]] = relationship(back_populates="document", order_by="Revision.id")
    department = relationship("Department")
    owner = relationship("User")

    def audit_title(self) -> str:
        return f"Document {self.number}"


@register
class Revision(Versioned, db.Model):
    """A revision of a document. Signable: reviewers and approvers sign its canonical content (document identity,
    revision label, change summary, reason and the SHA-256 of the content actually stored)."""

    __tablename__ = "qms_document_revision"
    __table_args__ = table_args(sa.UniqueConstraint("document_id", "major", "minor"))
    __audit_label__ = "Document revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document.id"), index=True,
                                             info={"label": "Document"})
    major: Mapped[int] = mapped_column(info={"label": "Major"})
    minor: Mapped[int] = mapped_column(info={"label": "Minor"})
    status: Mapped[str] = mapped_column(sa.String(16), default=DRAFT, index=True, info={"label": "Status"})
    content_format: Mapped[str] = mapped_column(sa.String(16), default="markdown", info={"label": "Content format"})
    content_markdown: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Content (Markdown)"})
    content_pdf: Mapped[bytes | None] = mapped_column(sa.LargeBinary, info={"label": "Content (PDF)"})
    content_filename: Mapped[str | None] = mapped_column(sa.String(255), info={"label": "File name"})
    content_sha256: Mapped[str] = mapped_column(sa.String(64), info={"label": "Content SHA-256"})
    change_summary: Mapped[str] = mapped_column(sa.Text, info={"label": "Change summary"})
    reason: Mapped[str] = mapped_column(sa.Text, info={"label": "Reason for revision"})
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Author"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    submitted_at: Mapped[datetime | None] = mapped_column(info={"label": "Submitted for review at"})
    approved_at: Mapped[datetime | None] = mapped_column(info={"label": "Approved at"})
    effective_on: Mapped[date | None] = mapped_column(info={"label": "Effective date"})
    effective_at: Mapped[datetime | None] = mapped_column(info={"label": "Became effective at"})
    superseded_at: Mapped[datetime | None] = mapped_column(info={"label": "Superseded at"})
    obsoleted_at: Mapped[datetime | None] = mapped_column(info={"label": "Made obsolete at"})
    obsolete_reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason made obsolete"})
    review_due_on: Mapped[date | None] = mapped_column(info={"label": "Periodic review due"})
    release_override_note: Mapped[str | None] = mapped_column(
        sa.Text, info={"label": "Release override (justification and people not yet trained)"})
    row_version: Mapped[int] = mapped_column(default=1, info={"label": "Row version"})

    __mapper_args__ = {"version_id_col": row_version}

    document: Mapped[Document] = relationship(back_populates="revisions")
    author = relationship("User")
    routes: Mapped[list[RevisionRoute]] = relationship(back_populates="revision", cascade="all, delete-orphan",
                                                       order_by="RevisionRoute.id")

    signable_type = "qms_document_revision"
    allowed_meanings = (sig.AUTHORED, sig.REVIEWED, sig.APPROVED, sig.REJECTED, sig.MADE_OBSOLETE,
                        sig.APPROVED_DESPITE_TRAINING, sig.READ_AND_UNDERSTOOD)

    @property
    def label(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def submission(self) -> int:
        """Which submission for review this is: 1, plus one for each time the revision was rejected back to Draft."""
        if self.id is None:
            return 1
        rejections = db.session.scalar(
            sa.select(sa.func.count()).select_from(sig.Signature)
            .where(sig.Signature.record_type == self.signable_type, sig.Signature.record_id == self.id,
                   sig.Signature.meaning == sig.REJECTED))
        return 1 + (rejections or 0)

    @property
    def signable_version(self) -> str:
        """The version a signature is bound to: the label, plus the submission after a rejection (e.g. "1.0
        submission 2"). Signatures of an earlier submission do not count for a resubmission, and the signing
        ceremony refuses a second signature with the same meaning on the same version, so without the submission
        nobody could sign a resubmitted revision again."""
        n = self.submission
        return self.label if n == 1 else f"{self.label} submission {n}"

    @property
    def concurrency_token(self) -> str:
        return str(self.row_version)

    def signable_title(self) -> str:
        return self.audit_title()

    def content_bytes(self) -> bytes:
        if self.content_format == "pdf":
            return self.content_pdf or b""
        return (self.content_markdown or "").encode("utf-8")

    def computed_content_sha256(self) -> str:
        return hashlib.sha256(self.content_bytes()).hexdigest()

    def canonical_content(self) -> bytes:
        """What a signature binds: fields frozen once the revision leaves Draft, and the hash of the stored content
        as it is now (so a direct change of the content invalidates every signature)."""
        doc = self.document
        data = {"document": doc.number, "title": doc.title, "type": doc.doc_type, "revision": self.label,
                "format": self.content_format, "content_sha256": self.computed_content_sha256(),
                "change_summary": self.change_summary, "reason": self.reason, "author_id": self.author_id}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    def audit_requires_reason(self) -> bool:
        # a draft is work in progress; once the stored revision has left Draft every change needs a reason
        history = sa.inspect(self).attrs.status.history
        previous = history.deleted[0] if history.deleted else self.status
        return previous != DRAFT

    def audit_title(self) -> str:
        number = self.document.number if self.document is not None else f"document {self.document_id}"
        return f"{number} revision {self.label}"


class RevisionRoute(Versioned, db.Model):
    """A reviewer or approver the author routed the revision to; each must sign."""

    __tablename__ = "qms_revision_route"
    __table_args__ = table_args(sa.UniqueConstraint("revision_id", "user_id", "step"))
    __audit_label__ = "Routing"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_document_revision.id"), index=True,
                                             info={"label": "Revision"})
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "User"})
    step: Mapped[str] = mapped_column(sa.String(16), info={"label": "Step"})

    revision: Mapped[Revision] = relationship(back_populates="routes")
    user = relationship("User")
