"""Personal API tokens for shop-floor systems (MES, LIMS) that ask Attest questions on a person's behalf.

A token belongs to one person and is never shared: every request made with it is recorded as an audit event
attributed to that person. The secret is shown once, when it is created; only its SHA-256 is stored (a token is a
random 256-bit value, so a plain hash is enough: there is nothing to guess). The owner or an administrator revokes it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core import audit
from core.auth.models import User
from core.clock import now_utc
from core.db import Versioned, db, table_args
from core.errors import NotPermitted, ValidationError

PREFIX = "att_"
MAX_ACTIVE_PER_USER = 10


class ApiToken(Versioned, db.Model):
    __tablename__ = "core_api_token"
    __table_args__ = table_args()
    __audit_label__ = "API token"
    __audit_reason_exempt__ = frozenset({"revoked_at", "revoked_by_id"})  # revoking needs no reason

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Owner"})
    name: Mapped[str] = mapped_column(sa.String(100), info={"label": "Name"})
    token_prefix: Mapped[str] = mapped_column(sa.String(16), info={"label": "Token starts with"})
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, info={"label": "Token SHA-256"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    expires_on: Mapped[date | None] = mapped_column(info={"label": "Expires on"})
    revoked_at: Mapped[datetime | None] = mapped_column(info={"label": "Revoked at"})
    revoked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("core_user.id"), info={"label": "Revoked by"})

    user = relationship("User", foreign_keys=[user_id])

    def audit_title(self) -> str:
        return f"API token {self.token_prefix}… ({self.name})"

    def is_usable(self, today: date | None = None) -> bool:
        today = today or now_utc().date()
        return self.revoked_at is None and (self.expires_on is None or self.expires_on > today)

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "Revoked"
        if self.expires_on is not None and self.expires_on <= now_utc().date():
            return "Expired"
        return "Active"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create(owner: User, *, name: str, expires_on: date | None = None) -> tuple[ApiToken, str]:
    """Create a token for `owner` (only they use it). Returns the record and the secret, which is never shown again."""
    name = (name or "").strip()
    if not 3 <= len(name) <= 100:
        raise ValidationError("name", "Name must be 3 to 100 characters, e.g. 'MES line 4 qualification check'.")
    if expires_on is not None and expires_on <= now_utc().date():
        raise ValidationError("expires_on", "Expiry date must be in the future.")
    if not owner.active:
        raise ValidationError("user", "Only an active person can hold an API token.")
    active = db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken).where(
        ApiToken.user_id == owner.id, ApiToken.revoked_at.is_(None)))
    if active >= MAX_ACTIVE_PER_USER:
        raise ValidationError("name", f"A person may hold at most {MAX_ACTIVE_PER_USER} active tokens; revoke one "
                                      f"first.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=owner.id, name=name, token_prefix=secret[:10], token_hash=_digest(secret),
                     expires_on=expires_on)
    db.session.add(token)
    db.session.flush()
    audit.record_event("api_token.created", subject=owner, token=token.token_prefix, name=name,
                       expires_on=expires_on.isoformat() if expires_on else None)
    return token, secret


def revoke(token: ApiToken, *, actor: User) -> ApiToken:
    """The owner, or an administrator (users.manage), revokes a token; it stops working at once."""
    if actor.id != token.user_id and not actor.can("users.manage"):
        raise NotPermitted("Only the token's owner or an administrator can revoke it.")
    if token.revoked_at is not None:
        raise ValidationError("token", "This token is already revoked.")
    token.revoked_at = now_utc()
    token.revoked_by_id = actor.id
    db.session.flush()
    audit.record_event("api_token.revoked", subject=token.user, token=token.token_prefix, name=token.name)
    return token


def revoke_all_of_deactivated(user: User) -> None:
    """A deactivated account loses its tokens for good (reactivation does not bring them back); called by
    core.auth.services.deactivate_account in the same transaction."""
    for token in db.session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id,
                                                              ApiToken.revoked_at.is_(None))):
        token.revoked_at = now_utc()
        token.revoked_by_id = None
        db.session.flush()
        audit.record_event("api_token.revoked", subject=user, token=token.token_prefix, name=token.name,
                           because="account deactivated")


def tokens_of(user_id: int) -> list[ApiToken]:
    return list(db.session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user_id)
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def resolve(secret: str | None) -> ApiToken | None:
    """The usable token with this secret whose owner is active, or None."""
    if not secret or not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or not token.is_usable() or not token.user.active:
        return None
    return token
