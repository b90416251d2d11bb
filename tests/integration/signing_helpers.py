"""Shared set-up for the signature and manifest tests: a revision under review and proofs (out-of-band SQL:
`features.support.inspection.direct_sql`)."""

from __future__ import annotations

from typing import Any

from core.db import db, transaction
from core.org import Department, Site
from qms.documents.models import IN_REVIEW, Document, Revision
from signatures.models import Signature
from signatures.services import SignerProof, authenticate, sign
from testkit.plugin import PASSWORD, totp_code


def make_revision(author: Any, *, number: str = "SOP-QA-001", content: str = "# Purpose\n\nClean the mixer.\n",
                  status: str = IN_REVIEW) -> Revision:
    """A document with revision 1.0 (created directly with the ORM, as the documents service is built elsewhere)."""
    with transaction():
        site = Site(code=f"S-{number}", name="Main site")
        department = Department(site=site, code="QA", name="Quality Assurance")
        document = Document(number=number, title="Cleaning of the mixer", doc_type="SOP", department=department,
                            owner_id=author.id)
        revision = Revision(document=document, major=1, minor=0, status=status, content_markdown=content,
                            change_summary="First issue", reason="New procedure", author_id=author.id)
        revision.content_sha256 = revision.computed_content_sha256()
        db.session.add_all([site, department, document, revision])
    return revision


def prove(user: Any, password: str = PASSWORD, code: str | None = None) -> SignerProof | None:
    """Step 1 of the ceremony, committed whatever its outcome (as the signing view does)."""
    with transaction():
        if code is None and user.security.totp_enrolled:
            code = totp_code(user)
        return authenticate(user, password=password, totp_code=code)


def sign_as(user: Any, record: Any, meaning: str, **kwargs: Any) -> Signature:
    """The whole ceremony: authenticate (its own unit of work), then sign in the business transaction."""
    proof = prove(user)
    assert proof is not None, f"{user.username} could not authenticate"
    with transaction():
        return sign(record, signer=user, proof=proof, meaning=meaning, **kwargs)
