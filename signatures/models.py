"""Electronic signature records (21 CFR 11.50, 11.70). Written once; no update or delete path exists."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Versioned, db, table_args

AUTHORED = "Authored"
REVIEWED = "Reviewed"
APPROVED = "Approved"
READ_AND_UNDERSTOOD = "Read and understood"
EXECUTED = "Executed"
VERIFIED = "Verified"
REJECTED = "Rejected"
MADE_OBSOLETE = "Made obsolete"
APPROVED_DESPITE_TRAINING = "Approved with open training"
CANCELLED = "Cancelled"  # QA ends a quality record (or one CAPA action) without completing it; the comment says why
MEANINGS = (AUTHORED, REVIEWED, APPROVED, READ_AND_UNDERSTOOD, EXECUTED, VERIFIED, REJECTED, APPROVED_DESPITE_TRAINING,
            MADE_OBSOLETE, CANCELLED)
# how the signer was authenticated; "demo-data" marks signatures written by `flask demo load` without a ceremony
AUTH_METHODS = ("password", "password+totp", "demo-data")


class Signature(Versioned, db.Model):
    """One signature: who (and their printed name then), when (UTC), what it means, on exactly which version of
    which record, and the SHA-256 of that record's canonical content at the moment of signing."""

    __tablename__ = "sig_signature"
    __table_args__ = table_args(sa.Index("ix_sig_signature_record", "record_type", "record_id"))
    __audit_label__ = "Signature"
    __immutable__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    signer_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Signer"})
    username: Mapped[str] = mapped_column(sa.String(64), info={"label": "Username"})
    printed_name: Mapped[str] = mapped_column(sa.String(200), info={"label": "Printed name"})
    signed_at: Mapped[datetime] = mapped_column(info={"label": "Signed at (UTC)"})
    meaning: Mapped[str] = mapped_column(sa.String(32), info={"label": "Meaning"})
    record_type: Mapped[str] = mapped_column(sa.String(64), info={"label": "Record type"})
    record_id: Mapped[int] = mapped_column(info={"label": "Record id"})
    record_version: Mapped[str] = mapped_column(sa.String(32), info={"label": "Record version"})
    content_sha256: Mapped[str] = mapped_column(sa.String(64), info={"label": "Content SHA-256"})
    auth_method: Mapped[str] = mapped_column(sa.String(32), info={"label": "Authentication"})
    comment: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Comment"})

    def audit_title(self) -> str:
        return f"Signature {self.id} ({self.meaning} by {self.username})"
