"""The signing ceremony, used by every signed record (documents, training, CAPA, validation runs).

A ceremony has two steps, each its own unit of work:

1. `authenticate()` re-checks the signer's password and, where enrolled or required, a TOTP code. Its failures are
   audited and count toward lockout, so the caller commits its transaction whether or not it succeeds.
2. `sign()` records the signature inside the caller's business transaction (e.g. approving a revision), given the
   in-memory `SignerProof` from step 1: it cannot be obtained through any request parameter, so nobody can sign as
   another user.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import sqlalchemy as sa

from core import audit
from core.auth import passwords
from core.auth import services as auth
from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.errors import AttestError, InvalidTransition, ValidationError
from signatures.models import MEANINGS, Signature

PROOF_TTL = timedelta(minutes=2)
DECLARATION = ("By signing I confirm that this electronic signature is the legally binding equivalent of my "
               "handwritten signature.")


@runtime_checkable
class Signable(Protocol):
    """What a record offers to be signed. Implemented by higher packages' models (e.g. qms Revision)."""

    signable_type: ClassVar[str]
    allowed_meanings: ClassVar[tuple[str, ...]]
    id: int

    @property
    def signable_version(self) -> str: ...

    def signable_title(self) -> str: ...

    def canonical_content(self) -> bytes: ...


_REGISTRY: dict[str, type] = {}


def register(model: type) -> type:
    """Make a signable model known to manifests and verification (class decorator)."""
    _REGISTRY[model.signable_type] = model
    return model


def record_for(record_type: str, record_id: int) -> Any | None:
    model = _REGISTRY.get(record_type)
    return db.session.get(model, record_id) if model is not None else None


def content_hash(record: Signable) -> str:
    return hashlib.sha256(record.canonical_content()).hexdigest()


@dataclass
class SignerProof:
    """Proof that the signer re-authenticated just now. Good for one signature (11.200(a)(1): each signing needs at
    least the password again)."""

    user_id: int
    method: str
    at: datetime
    used: bool = field(default=False)


class SignatureRefused(AttestError):
    status = 409


def precheck(user: User, password: str) -> None:
    """Check the signer's password before the ceremony's unit of work opens (core.auth.passwords.precheck), so that
    argon2 does not run while SQLite's write lock is held; authenticate() then uses the answer. Reads only."""
    passwords.precheck(user.security.password_hash, password or "")


def authenticate(user: User, *, password: str, totp_code: str | None) -> SignerProof | None:
    """Re-authenticate `user` (the logged-in person: callers pass current_user, never a user id from the request).

    Returns None when refused; the failure is audited and counts toward lockout."""
    if not user.active or user.security.locked:
        audit.record_event("signature.failure", subject=user, reason="account locked or deactivated")
        return None
    with audit.acting_as(user):
        if not passwords.verify_password(user.security.password_hash, password or ""):
            auth._count_failure(user, "signature.failure", reason="wrong password")
            return None
    method = "password"
    if user.security.totp_enrolled or auth.totp_required(user):
        if not user.security.totp_enrolled:
            audit.record_event("signature.failure", subject=user, reason="second factor required but not set up")
            return None
        if not auth.check_totp(user, totp_code or ""):
            # check_totp audits a second-factor failure (and counts it toward lockout); say it was a signing attempt
            with audit.acting_as(user):
                audit.record_event("signature.failure", subject=user, reason="wrong or reused second-factor code")
            return None
        method = "password+totp"
    user.security.failed_attempts = 0
    db.session.flush()
    return SignerProof(user.id, method, now_utc())


def sign(record: Signable, *, signer: User, proof: SignerProof, meaning: str, comment: str | None = None,
         expected_version: str | None = None, allowed: tuple[str, ...] | None = None,
         since: datetime | None = None) -> Signature:
    """Record `signer`'s signature with `meaning` on the exact current version of `record`.

    `expected_version` is the record's `concurrency_token` (or version) the signer saw on the page: a record that
    changed since is refused as stale. A second signature with the same meaning on the same version is refused,
    counting only signatures made at or after `since` when given (a new signing round, e.g. making obsolete a
    revision its approver approved)."""
    if not isinstance(record, Signable):
        raise TypeError(f"{record!r} is not signable")
    if proof.user_id != signer.id:
        raise SignatureRefused("A signature can only be applied by the person who authenticated.")
    if now_utc() - proof.at > PROOF_TTL:
        raise SignatureRefused("The signature authentication has expired; enter your password again.")
    if proof.used:
        raise SignatureRefused("Each signature needs your password again.")
    # `allowed` narrows the record's meanings for one step (e.g. only "Approved" at approval); it never widens them,
    # and an empty tuple allows nothing (it must not fall back to every meaning of the record)
    choices = tuple(m for m in record.allowed_meanings if m in MEANINGS and (allowed is None or m in allowed))
    if meaning not in choices:
        if not choices:
            raise ValidationError("meaning", f"No signature meaning is allowed for {record.signable_title()} here.")
        raise ValidationError("meaning", f"Meaning must be one of: {', '.join(choices)}.")
    version = record.signable_version
    current = str(getattr(record, "concurrency_token", version))
    if expected_version is not None and str(expected_version) != current:
        raise InvalidTransition(f"{record.signable_title()} changed since the page was loaded; review it again "
                                f"before signing.")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > 2000:
        raise ValidationError("comment", "Comment must be at most 2000 characters.")
    same = (sa.select(Signature.id).where(Signature.record_type == record.signable_type,
                                          Signature.record_id == record.id, Signature.record_version == version,
                                          Signature.signer_id == signer.id, Signature.meaning == meaning))
    if since is not None:
        same = same.where(Signature.signed_at >= since)
    duplicate = db.session.scalar(same)
    if duplicate is not None:
        raise SignatureRefused(f"You have already signed {record.signable_title()} as “{meaning}”.")
    signature = Signature(signer_id=signer.id, username=signer.username, printed_name=signer.full_name,
                          signed_at=now_utc(), meaning=meaning, record_type=record.signable_type,
                          record_id=record.id, record_version=version, content_sha256=content_hash(record),
                          auth_method=proof.method, comment=comment)
    db.session.add(signature)
    db.session.flush()
    proof.used = True
    return signature


def signatures_for(record: Signable, *, exclude_meanings: tuple[str, ...] = ()) -> list[Signature]:
    stmt = sa.select(Signature).where(Signature.record_type == record.signable_type, Signature.record_id == record.id)
    if exclude_meanings:
        stmt = stmt.where(Signature.meaning.not_in(exclude_meanings))
    return list(db.session.scalars(stmt.order_by(Signature.signed_at, Signature.id)))


def count_for(record: Signable, meaning: str) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Signature).where(
        Signature.record_type == record.signable_type, Signature.record_id == record.id,
        Signature.meaning == meaning)) or 0


def is_valid(signature: Signature, record: Signable) -> bool:
    """True while the record's current content is the content that was signed."""
    return (signature.record_type == record.signable_type and signature.record_id == record.id
            and signature.record_version == record.signable_version
            and secrets.compare_digest(signature.content_sha256, content_hash(record)))


VALID, EARLIER, INVALID = "valid", "earlier", "invalid"


def status(signature: Signature, record: Signable) -> str:
    """VALID; EARLIER for a signature on an earlier version or submission of the record (its content may
    legitimately have been revised since); INVALID when the signed version's content no longer matches (altered)."""
    if signature.record_version != record.signable_version:
        return EARLIER
    return VALID if is_valid(signature, record) else INVALID


def manifestation(signature: Signature) -> str:
    """The three elements of 21 CFR 11.50 on one line, time in UTC with the zone named."""
    return (f"{signature.printed_name} — {signature.meaning} — "
            f"{signature.signed_at.strftime('%Y-%m-%d %H:%M:%S')} UTC")
