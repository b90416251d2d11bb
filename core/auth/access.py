"""Login sessions and permission checks.

Flask's session is a signed cookie the client keeps, so logging out alone would not revoke a copied cookie. Each
session carries the user's current session nonce; it is checked on every request and rotated at login, logout,
password change, administrator resets and deactivation, so an older cookie stops working at once. Idle timeout and
absolute lifetime are checked on every request too.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy.orm import joinedload

from core import audit
from core.auth.models import User
from core.auth.permissions import PERMISSIONS
from core.clock import now_utc
from core.converters import MAX_ID
from core.db import db, transaction

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to continue."
login_manager.login_message_category = "info"
login_manager.session_protection = None  # the session nonce below does this job, and survives proxies

AUTHENTICATED = "authenticated"  # marker for pages any logged-in user may use (own account, logout)
PUBLIC = "public"


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    # one statement for the person, their security row and their role grants (every request needs all three)
    user = db.session.get(User, int(user_id), options=[joinedload(User.security), joinedload(User.role_grants)]) \
        if user_id.isdigit() and int(user_id) <= MAX_ID else None
    if user is None or not user.active or user.security.locked:
        return None
    nonce = session.get("_nonce")
    if not nonce or not secrets.compare_digest(nonce, user.security.session_nonce or ""):
        return None
    return user


def start_session(user: User, nonce: str) -> None:
    """Begin a fresh session for `user` (a new session id: no fixation)."""
    session.clear()
    login_user(user, remember=False, fresh=True)
    now = int(now_utc().timestamp())
    session["_nonce"] = nonce
    session["_sid"] = secrets.token_hex(16)
    session["_login_at"] = now
    session["_last_seen"] = now
    session.permanent = False


def end_session() -> None:
    logout_user()
    session.clear()


def check_session_limits() -> Any:
    """before_request: expire idle or too old sessions with a message saying why."""
    if "_user_id" not in session or not current_user.is_authenticated:
        return None
    now = int(now_utc().timestamp())
    idle = current_app.config["ATTEST_SESSION_IDLE_MINUTES"] * 60
    lifetime = current_app.config["ATTEST_SESSION_MAX_HOURS"] * 3600
    last_seen = session.get("_last_seen", 0)
    login_at = session.get("_login_at", 0)
    reason = None
    if now - last_seen > idle:
        reason = f"Your session ended after {idle // 60} minutes without activity. Please log in again."
    elif now - login_at > lifetime:
        reason = f"Your session reached its maximum length of {lifetime // 3600} hours. Please log in again."
    if reason:
        user = current_user._get_current_object() if current_user.is_authenticated else None
        end_session()
        if user is not None:
            with transaction(), audit.acting_as(user):
                audit.record_event("session.expired", subject=user)
        flash(reason, "warning")
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    session["_last_seen"] = now
    return None


def permission_required(code: str, *alternatives: str) -> Callable:
    """Protect a view: anonymous users go to the login page; users holding none of `code` and `alternatives` get a
    403 naming them, and the denial is recorded as a security event. Alternatives are for actions two kinds of people
    may take (e.g. the executor or QA abandons a validation run); the service then applies the record-level rule.
    The codes are checked against the registered permissions once the application is assembled (check_routes):
    packages register theirs in init_app, which may run after their views are imported."""
    codes = (code, *alternatives)
    if AUTHENTICATED in codes and alternatives:
        raise ValueError("a page open to every logged-in user needs no alternative permission")

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if code != AUTHENTICATED and not any(current_user.can(each) for each in codes):
                deny(*codes)
            return view(*args, **kwargs)

        # read by the tests that every view checks a permission and that the authorisation matrix agrees
        wrapper.required_permission = code
        wrapper.required_permissions = codes
        return wrapper

    return decorator


def public(view: Callable) -> Callable:
    view.required_permission = PUBLIC
    return view


def token_only(view: Callable) -> Callable:
    """A JSON API view that authenticates every request itself (personal API token), never by a login session: the
    session gates in core.web skip it, so it neither redirects to the login page nor sets or extends a session."""
    view.required_permission = PUBLIC
    view.sessionless = True
    return view


def deny(*codes: str) -> None:
    """Refuse the request with a 403 naming the permission (or the permissions, any of which would do) and record
    the refusal as a `permission.denied` security event."""
    user = current_user._get_current_object()
    db.session.rollback()
    with transaction():
        audit.record_event("permission.denied", subject=user, permission=" or ".join(codes), method=request.method,
                           path=request.path)
    g.missing_permission = codes[0]
    named = " or ".join(f"“{PERMISSIONS[each].label}” ({each})" for each in codes)
    noun = "the permission" if len(codes) == 1 else "one of the permissions"
    abort(403, description=f"This page needs {noun} {named}, which your roles do not grant.")


def check_routes(app) -> None:
    """Every route names permissions some package registered: a typo stops the application at start-up."""
    for endpoint, view in app.view_functions.items():
        for each in getattr(view, "required_permissions", ()):
            if each not in PERMISSIONS and each != AUTHENTICATED:
                raise RuntimeError(f"route {endpoint} needs the unknown permission {each!r}")
    for _position, _label, endpoint, permission in app.extensions.get("attest_nav", []):
        if permission not in PERMISSIONS:
            raise RuntimeError(f"navigation entry {endpoint} needs the unknown permission {permission!r}")
