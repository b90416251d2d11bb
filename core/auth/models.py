"""Identity: users, their role grants, and their credentials and login state.

`User` and `UserRole` are GxP records (versioned, audited). Credentials and login state live apart in
`UserSecurity`, which is not versioned: password hashes and TOTP secrets must never reach an audit trail or an
export, and counters such as failed attempts change on every login. Every change to it is recorded as a security
event in the audit trail instead.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.auth.permissions import ROLES, permissions_for
from core.clock import now_utc
from core.db import Versioned, db, table_args
from core.org import Department, Site


class User(Versioned, UserMixin, db.Model):
    __tablename__ = "core_user"
    __table_args__ = table_args()
    __audit_label__ = "User"
    __audit_reason_exempt__ = frozenset({"timezone"})

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True, info={"label": "Username"})
    full_name: Mapped[str] = mapped_column(sa.String(200), info={"label": "Full printed name"})
    email: Mapped[str] = mapped_column(sa.String(254), info={"label": "E-mail"})
    active: Mapped[bool] = mapped_column(default=True, info={"label": "Active"})
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("core_site.id"), index=True, info={"label": "Site"})
    department_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("core_department.id"), index=True, info={"label": "Department"}
    )
    supervisor_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("core_user.id"), index=True, info={"label": "Supervisor"}
    )
    timezone: Mapped[str | None] = mapped_column(sa.String(64), info={"label": "Time zone"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    deactivated_at: Mapped[datetime | None] = mapped_column(info={"label": "Deactivated at"})

    site: Mapped[Site | None] = relationship()
    department: Mapped[Department | None] = relationship()
    supervisor: Mapped[User | None] = relationship(remote_side=[id])
    role_grants: Mapped[list[UserRole]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                       order_by="UserRole.role")
    security: Mapped[UserSecurity] = relationship(back_populates="user", uselist=False,
                                                  cascade="all, delete-orphan")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    @property
    def role_codes(self) -> frozenset[str]:
        return frozenset(g.role for g in self.role_grants)

    @property
    def role_names(self) -> list[str]:
        return [ROLES[c].name for c in sorted(self.role_codes)]

    @property
    def permissions(self) -> frozenset[str]:
        return permissions_for(self.role_codes)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def audit_title(self) -> str:
        return f"User {self.username}"


class UserRole(Versioned, db.Model):
    """A role granted to a user. Revoking deletes the grant; its history stays in the version table."""

    __tablename__ = "core_user_role"
    __table_args__ = table_args(sa.UniqueConstraint("user_id", "role"))
    __audit_label__ = "Role grant"
    __allow_delete__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "User"})
    role: Mapped[str] = mapped_column(sa.String(32), info={"label": "Role"})

    user: Mapped[User] = relationship(back_populates="role_grants")

    def audit_title(self) -> str:
        return f"Role grant {self.role}"


class UserSecurity(db.Model):
    __tablename__ = "core_user_security"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    must_change_password: Mapped[bool] = mapped_column(default=True)
    password_changed_at: Mapped[datetime | None]
    failed_attempts: Mapped[int] = mapped_column(default=0)
    locked_at: Mapped[datetime | None]
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    totp_pending_secret: Mapped[str | None] = mapped_column(sa.String(64))
    totp_enrolled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    session_nonce: Mapped[str | None] = mapped_column(sa.String(64))
    last_login_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="security")

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    @property
    def totp_enrolled(self) -> bool:
        return self.totp_secret is not None


class PasswordHistory(db.Model):
    """Hashes of a user's previous passwords, for the 'not one of the last N' rule."""

    __tablename__ = "core_password_history"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
