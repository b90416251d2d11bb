"""Identity and access use cases. They flush, never commit: callers wrap them in core.db.transaction()."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyotp
import sqlalchemy as sa
from flask import current_app

from core import audit
from core.auth import passwords, tokens
from core.auth.models import PasswordHistory, User, UserRole, UserSecurity
from core.auth.permissions import ROLES, holds_signing_permission
from core.clock import now_utc
from core.db import db, lock_row
from core.errors import NotPermitted, ValidationError
from core.org import Department, Site

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _setting(name: str, default):
    try:
        return current_app.config.get(f"ATTEST_{name}", default)
    except RuntimeError:  # outside an application context
        return default


def _require_reason(action: str) -> None:
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", f"A reason is required to {action}.")


def get_by_username(username: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.username == (username or "").strip().lower()))


def new_session_nonce() -> str:
    return secrets.token_hex(16)


# --- accounts -------------------------------------------------------------------------------------------------------


def _validate_profile(*, full_name: str, email: str, timezone: str | None) -> None:
    if not full_name or len(full_name.strip()) < 3:
        raise ValidationError("full_name", "Full printed name is required (at least 3 characters); it appears on "
                                           "every signature.")
    if len(full_name) > 200:
        raise ValidationError("full_name", "Full printed name must be at most 200 characters.")
    if not email or not EMAIL_RE.match(email) or len(email) > 254:
        raise ValidationError("email", "E-mail must be a valid address such as name@example.com.")
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError("timezone", f"Time zone must be an IANA name such as Europe/Zurich, not "
                                              f"{timezone!r}.") from None


def _check_org(site_id: int | None, department_id: int | None, supervisor_id: int | None) -> None:
    if site_id is not None and db.session.get(Site, site_id) is None:
        raise ValidationError("site_id", "Site does not exist.")
    if department_id is not None:
        dept = db.session.get(Department, department_id)
        if dept is None:
            raise ValidationError("department_id", "Department does not exist.")
        if site_id is not None and dept.site_id != site_id:
            raise ValidationError("department_id", "Department must belong to the user's site.")
    if supervisor_id is not None:
        sup = db.session.get(User, supervisor_id)
        if sup is None or not sup.active:
            raise ValidationError("supervisor_id", "Supervisor must be an active user.")


def _check_role_set(roles: set[str], field: str = "roles") -> None:
    unknown = roles - ROLES.keys()
    if unknown:
        raise ValidationError(field, f"Unknown role(s): {', '.join(sorted(unknown))}.")
    if "system_admin" in roles and holds_signing_permission(roles - {"system_admin"}):
        raise ValidationError(
            field,
            "Segregation of duties: the System administrator role cannot be combined with a role that signs "
            "records (" + ", ".join(ROLES[r].name for r in sorted(roles) if r != "system_admin" and ROLES[r].signing)
            + ").",
        )


def create_user(*, username: str, full_name: str, email: str, roles: set[str] | frozenset[str] = frozenset(),
                site_id: int | None = None, department_id: int | None = None, supervisor_id: int | None = None,
                timezone: str | None = None, password: str | None = None, must_change_password: bool = True,
                password_hash: str | None = None, actor: User | None = None) -> tuple[User, str | None]:
    """Create an account. Returns the user and the temporary password to hand over (None if one was given)."""
    username = (username or "").strip().lower()
    if not USERNAME_RE.match(username):
        raise ValidationError("username", "Username must be 2-64 characters: lower-case letters, digits, '.', '_' "
                                          "or '-', starting with a letter or digit.")
    existing = get_by_username(username)
    if existing is not None:
        if not existing.active:
            raise ValidationError("username", f"Username {username!r} belonged to a deactivated account; user IDs "
                                              f"are never reused.")
        raise ValidationError("username", f"Username {username!r} is already taken.")
    full_name = (full_name or "").strip()
    email = (email or "").strip()
    _validate_profile(full_name=full_name, email=email, timezone=timezone)
    _check_org(site_id, department_id, supervisor_id)
    roles = set(roles)
    _check_role_set(roles)
    if actor is not None and "users.manage" not in actor.permissions:
        raise NotPermitted("Creating accounts needs the permission 'users.manage'.")

    temporary = None
    if password_hash is None:
        if password is None:
            temporary = password = passwords.generate_temporary_password()
        else:
            passwords.check_policy(password, username=username, min_length=_setting("PASSWORD_MIN_LENGTH", 12),
                                   previous_hashes=[], field="password")
        password_hash = passwords.hash_password(password)
    user = User(username=username, full_name=full_name, email=email, site_id=site_id, department_id=department_id,
                supervisor_id=supervisor_id, timezone=timezone or None, active=True, created_at=now_utc())
    user.security = UserSecurity(password_hash=password_hash, must_change_password=must_change_password,
                                 password_changed_at=now_utc(), session_nonce=new_session_nonce())
    user.role_grants = [UserRole(role=r) for r in sorted(roles)]
    db.session.add(user)
    db.session.flush()
    db.session.add(PasswordHistory(user_id=user.id, password_hash=password_hash, created_at=now_utc()))
    db.session.flush()
    return user, temporary


def update_profile(user: User, *, full_name: str, email: str, site_id: int | None, department_id: int | None,
                   supervisor_id: int | None, timezone: str | None) -> None:
    full_name = (full_name or "").strip()
    email = (email or "").strip()
    _validate_profile(full_name=full_name, email=email, timezone=timezone)
    _check_org(site_id, department_id, supervisor_id)
    if supervisor_id == user.id:
        raise ValidationError("supervisor_id", "A user cannot be their own supervisor.")
    user.full_name, user.email = full_name, email
    user.site_id, user.department_id, user.supervisor_id = site_id, department_id, supervisor_id
    user.timezone = timezone or None
    db.session.flush()


def set_roles(user: User, roles: set[str] | frozenset[str], *, actor: User | None) -> None:
    roles = set(roles)
    _check_role_set(roles)
    before = user.role_codes
    if roles == before:
        return
    if actor is not None and actor.id == user.id:
        raise NotPermitted("Segregation of duties: nobody can change their own roles; ask another administrator.")
    for grant in list(user.role_grants):
        if grant.role not in roles:
            user.role_grants.remove(grant)
    for code in sorted(roles - before):
        user.role_grants.append(UserRole(role=code))
    db.session.flush()
    audit.record_event("roles.changed", subject=user, old=sorted(before), new=sorted(roles))


def deactivate_account(user: User, *, actor: User | None) -> None:
    """The account stops working: its sessions end at once and its API tokens are revoked for good. A person who
    leaves is deactivated through training.people.services.deactivate_person, which calls this and then closes
    what the person still had to do (accounts are never deleted; the username is never reused)."""
    if not user.active:
        raise ValidationError("active", f"{user.username} is already deactivated.")
    if actor is not None and actor.id == user.id:
        raise NotPermitted("You cannot deactivate your own account.")
    user.active = False
    user.deactivated_at = now_utc()
    user.security.session_nonce = new_session_nonce()  # live sessions stop working at once
    db.session.flush()
    audit.record_event("user.deactivated", subject=user)
    tokens.revoke_all_of_deactivated(user)


def reactivate_account(user: User) -> None:
    """The account works again (its revoked API tokens stay revoked). A person is reactivated through
    training.people.services.reactivate_person, which calls this and assigns what they must train on."""
    if user.active:
        raise ValidationError("active", f"{user.username} is already active.")
    user.active = True
    user.deactivated_at = None
    db.session.flush()
    audit.record_event("user.reactivated", subject=user)


# --- passwords ------------------------------------------------------------------------------------------------------


def _history(user: User) -> list[str]:
    keep = _setting("PASSWORD_HISTORY", 5)
    return list(db.session.scalars(
        sa.select(PasswordHistory.password_hash).where(PasswordHistory.user_id == user.id)
        .order_by(PasswordHistory.id.desc()).limit(keep)
    ))


def change_password(user: User, *, current: str, new: str, confirm: str) -> str:
    """Change the user's own password; returns the new session nonce (other sessions are signed out)."""
    if not passwords.verify_password(user.security.password_hash, current or ""):
        raise ValidationError("current_password", "Current password is not correct.")
    if new != confirm:
        raise ValidationError("confirm_password", "The two new passwords do not match.")
    passwords.check_policy(new, username=user.username, min_length=_setting("PASSWORD_MIN_LENGTH", 12),
                           previous_hashes=_history(user), history=_setting("PASSWORD_HISTORY", 5))
    digest = passwords.hash_password(new)
    sec = user.security
    sec.password_hash = digest
    sec.must_change_password = False
    sec.password_changed_at = now_utc()
    sec.session_nonce = new_session_nonce()
    db.session.add(PasswordHistory(user_id=user.id, password_hash=digest, created_at=now_utc()))
    db.session.flush()
    audit.record_event("password.changed", subject=user)
    return sec.session_nonce


def admin_reset_password(user: User, *, actor: User | None) -> str:
    """Set a random temporary password the user must change at next login. Returns it to hand over once."""
    if actor is not None and actor.id == user.id:
        raise NotPermitted("Use 'Change password' for your own account.")
    _require_reason("reset a password")
    temporary = passwords.generate_temporary_password()
    sec = user.security
    sec.password_hash = passwords.hash_password(temporary)
    sec.must_change_password = True
    sec.password_changed_at = now_utc()
    sec.session_nonce = new_session_nonce()
    db.session.flush()
    audit.record_event("password.reset", subject=user)
    return temporary


# --- login, lockout, TOTP ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    ok: bool
    message: str | None = None


GENERIC_LOGIN_FAILURE = "Invalid username or password, or the account is locked or deactivated."


def _count_failure(user: User, event: str, **detail) -> None:
    sec = user.security
    # read the count afresh under a row lock: wrong passwords sent at the same instant all count (on PostgreSQL an
    # unlocked read-increment-write would lose some of them, and an attacker would get more guesses than the limit)
    lock_row(sec)
    sec.failed_attempts += 1
    audit.record_event(event, subject=user, attempt=sec.failed_attempts, **detail)
    threshold = _setting("LOCKOUT_THRESHOLD", 5)
    if sec.failed_attempts >= threshold and sec.locked_at is None:
        sec.locked_at = now_utc()
        sec.session_nonce = new_session_nonce()  # open sessions end (not merely pause until an unlock)
        audit.record_event("account.locked", subject=user, failed_attempts=sec.failed_attempts)
    db.session.flush()


def precheck_login(username: str, password: str) -> None:
    """Check the password before the login's unit of work opens, so that argon2 does not run while it holds SQLite's
    write lock (core.auth.passwords.precheck); authenticate() then uses the answer. Reads only."""
    user = get_by_username(username)
    passwords.precheck(user.security.password_hash if user is not None else None, password or "")


def authenticate(username: str, password: str) -> LoginResult:
    """Check a username and password. Failures are audited and count toward lockout; the message never reveals
    whether the username exists."""
    user = get_by_username(username)
    if user is None:
        passwords.burn_time(password or "")
        audit.record_event("login.failure", subject_username=(username or "")[:200], reason="unknown username")
        return LoginResult(None, False, GENERIC_LOGIN_FAILURE)
    with audit.acting_as(user):
        if not passwords.verify_password(user.security.password_hash, password or ""):
            _count_failure(user, "login.failure", reason="wrong password")
            return LoginResult(None, False, GENERIC_LOGIN_FAILURE)
        if not user.active or user.security.locked:
            audit.record_event("login.failure", subject=user,
                               reason="account deactivated" if not user.active else "account locked")
            return LoginResult(None, False, GENERIC_LOGIN_FAILURE)
    return LoginResult(user, True)


def complete_login(user: User) -> str:
    """Record a successful login; returns the new session nonce (any older session of the user stops working)."""
    sec = user.security
    sec.failed_attempts = 0
    sec.last_login_at = now_utc()
    sec.session_nonce = new_session_nonce()
    with audit.acting_as(user):
        audit.record_event("login.success", subject=user, second_factor=sec.totp_enrolled)
    db.session.flush()
    return sec.session_nonce


def logout(user: User) -> None:
    user.security.session_nonce = new_session_nonce()
    audit.record_event("logout", subject=user)


def totp_required(user: User) -> bool:
    policy = _setting("TOTP_REQUIRED", "signers")
    if policy == "all":
        return True
    if policy == "signers":
        return holds_signing_permission(user.role_codes)
    return False


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret)


def check_totp(user: User, code: str) -> bool:
    """Verify a TOTP code (one step either side) and consume it: a code accepted once is refused the second time,
    even by a concurrent request (conditional UPDATE on the last accepted step). Failures count toward lockout."""
    sec = user.security
    code = (code or "").strip().replace(" ", "")
    step = None
    if sec.totp_secret and code.isdigit() and len(code) == 6:
        try:
            step = _totp(sec.totp_secret).verify_and_get_timecode(code, for_time=now_utc(), valid_window=1)
        except pyotp.exceptions.OTPVerificationError:
            step = None
    with audit.acting_as(user):
        if step is None:
            _count_failure(user, "login.totp_failure")
            return False
        table = UserSecurity.__table__
        changed = db.session.execute(
            sa.update(table)
            .where(table.c.user_id == user.id)
            .where(sa.or_(table.c.totp_last_step.is_(None), table.c.totp_last_step < step))
            .values(totp_last_step=step)
        ).rowcount
        if changed != 1:
            audit.record_event("totp.replay", subject=user)
            _count_failure(user, "login.totp_failure", reason="code already used")
            return False
        db.session.refresh(sec, ["totp_last_step"])
    return True


def begin_totp_enrollment(user: User) -> str:
    """A new secret, pending until the user proves their device produces a valid code."""
    secret = pyotp.random_base32()
    user.security.totp_pending_secret = secret
    db.session.flush()
    return secret


def provisioning_uri(user: User, secret: str) -> str:
    return _totp(secret).provisioning_uri(name=user.username, issuer_name=_setting("TOTP_ISSUER", "Attest"))


def confirm_totp_enrollment(user: User, code: str) -> None:
    sec = user.security
    if not sec.totp_pending_secret:
        raise ValidationError("code", "Start the enrolment again: no pending authenticator set-up was found.")
    code = (code or "").strip().replace(" ", "")
    try:
        step = _totp(sec.totp_pending_secret).verify_and_get_timecode(code, for_time=now_utc(), valid_window=1)
    except (pyotp.exceptions.OTPVerificationError, ValueError):
        raise ValidationError("code", "The code does not match; check the device's clock and enter the current "
                                      "6-digit code.") from None
    sec.totp_secret = sec.totp_pending_secret
    sec.totp_pending_secret = None
    sec.totp_enrolled_at = now_utc()
    sec.totp_last_step = step
    db.session.flush()
    audit.record_event("totp.enrolled", subject=user)


def admin_reset_totp(user: User, *, actor: User | None) -> None:
    """Revoke a lost or compromised device: the old secret stops working at once; the user re-enrols at login."""
    if actor is not None and actor.id == user.id:
        raise NotPermitted("An administrator cannot reset their own second factor; ask another administrator.")
    sec = user.security
    if not sec.totp_secret and not sec.totp_pending_secret:
        raise ValidationError("totp", f"{user.username} has no authenticator enrolled.")
    _require_reason("reset a second factor")
    sec.totp_secret = None
    sec.totp_pending_secret = None
    sec.totp_enrolled_at = None
    sec.session_nonce = new_session_nonce()
    db.session.flush()
    audit.record_event("totp.reset", subject=user)


def unlock(user: User, *, actor: User | None) -> None:
    if user.security.locked_at is None:
        raise ValidationError("locked", f"{user.username} is not locked.")
    if actor is not None and actor.id == user.id:
        raise NotPermitted("You cannot unlock your own account.")
    _require_reason("unlock an account")
    user.security.locked_at = None
    user.security.failed_attempts = 0
    db.session.flush()
    audit.record_event("account.unlocked", subject=user)
