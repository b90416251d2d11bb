"""Base pages (home, roles, configuration), error pages, template helpers and the request gates."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from core import config as config_module
from core.auth import services
from core.auth.access import AUTHENTICATED, check_session_limits, permission_required
from core.auth.permissions import PERMISSIONS, ROLES
from core.errors import REFUSALS, AttestError

bp = Blueprint("main", __name__)

# pages a user may reach while a forced password change or TOTP enrolment is pending
_GATE_EXEMPT = {"auth.change_password", "auth.totp_enroll", "auth.logout", "auth.login", "auth.login_totp", "static",
                "bootstrap.static"}


def register_nav(app, label: str, endpoint: str, permission: str, *, position: int) -> None:
    """A package adds its main page to the navigation bar (core knows none of them); `position` orders the entries
    (docs/architecture.md lists them). Idempotent: each create_app builds its own list."""
    entries = app.extensions.setdefault("attest_nav", [])
    entry = (position, label, endpoint, permission)
    if entry not in entries:
        entries.append(entry)
        entries.sort(key=lambda e: e[0])


def register_slot(app, slot: str, render: Callable[..., str], *, position: int = 50) -> None:
    """A package adds a fragment to a named place of a core page (e.g. training's job functions on the organisation
    page): `render(**values)` gets what the page passes to `slot(...)` and returns HTML (usually render_template of
    the package's own fragment), or "" to show nothing. Wiring of pages only: nothing that writes a record."""
    entries = app.extensions.setdefault("attest_slots", {}).setdefault(slot, [])
    if all(existing is not render for _, existing in entries):
        entries.append((position, render))
        entries.sort(key=lambda e: e[0])


@bp.app_template_global("slot")
def render_slot(slot: str, **values: Any) -> Markup:
    """In a core template: `{{ slot("users.show.details", user=user) }}`, the fragments packages registered there."""
    entries = current_app.extensions.get("attest_slots", {}).get(slot, [])
    return Markup("").join(Markup(render(**values)) for _, render in entries)


@bp.app_context_processor
def _inject():
    from core.audit import EVENT_LABELS
    from core.clock import now_utc

    nav = [(label, endpoint, permission) for _, label, endpoint, permission in current_app.extensions.get(
        "attest_nav", [])]
    return {"PERMISSIONS": PERMISSIONS, "ROLES": ROLES, "event_labels": EVENT_LABELS, "now_utc": now_utc,
            "nav_items": nav}


@bp.before_app_request
def _gates():
    if getattr(current_app.view_functions.get(request.endpoint), "sessionless", False):
        return None  # token-only API (core.auth.access.token_only): no login session is checked or extended
    response = check_session_limits()
    if response is not None:
        return response
    if not current_user.is_authenticated or request.endpoint in _GATE_EXEMPT:
        return None
    if current_user.security.must_change_password:
        return redirect(url_for("auth.change_password"))
    if services.totp_required(current_user) and not current_user.security.totp_enrolled:
        return redirect(url_for("auth.totp_enroll"))
    return None


@bp.before_app_request
def _refuse_nul():
    """No person types a NUL character (U+0000), and PostgreSQL can neither store nor compare text holding one: a
    form field or query parameter with one is refused here, naming it, instead of failing in the database. The JSON
    API refuses it as an invalid parameter, in its audited request."""
    if request.path.startswith("/api/"):
        return
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            if "\x00" in value:
                abort(400, description=f"The value of “{name[:64]}” contains a NUL character (U+0000), which is "
                                       f"never valid text. Nothing was saved: remove it and send the form again.")


@bp.after_app_request
def _no_store(response):
    # GxP pages must not linger in shared browser caches on shop-floor devices
    if request.endpoint not in ("static", "bootstrap.static"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def user_zone() -> ZoneInfo:
    name = None
    if current_user and getattr(current_user, "is_authenticated", False):
        name = current_user.timezone
    return ZoneInfo(name or current_app.config["ATTEST_DEFAULT_TIMEZONE"])


@bp.app_template_filter("localtime")
def localtime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A UTC instant in the viewer's time zone, with the zone named: '2026-11-23 14:08:31 CET (UTC+01:00)'."""
    if value is None:
        return ""
    try:
        local = value.astimezone(user_zone())
    except (OverflowError, ValueError):  # an instant at the very edge of the calendar (year 1 or 9999): shown in UTC
        local = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    offset = local.strftime("%z")
    return f"{local.strftime(fmt)} {local.tzname()} (UTC{offset[:3]}:{offset[3:5]})"


@bp.app_template_filter("event_detail")
def event_detail(detail: str | None) -> str:
    """An audit event's detail as readable 'label: value' pairs instead of raw JSON."""
    import json

    try:
        data = json.loads(detail or "{}")
    except ValueError:
        return detail or ""
    parts = []
    for key, value in data.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


@bp.route("/")
@permission_required("dashboard.view")
def index():
    locked = []
    if current_user.can("users.manage"):
        import sqlalchemy as sa

        from core.auth.models import User, UserSecurity
        from core.db import db

        locked = list(db.session.scalars(
            sa.select(User).join(UserSecurity).where(UserSecurity.locked_at.is_not(None))
            .order_by(UserSecurity.locked_at.desc()).limit(50)))
    return render_template("core/index.html", locked=locked)


@bp.route("/roles")
@permission_required("roles.view")
def roles():
    return render_template("core/roles.html", roles=ROLES.values(), permissions=PERMISSIONS.values())


@bp.route("/admin/configuration")
@permission_required("config.view")
def configuration():
    from core.db import db

    return render_template("core/configuration.html", rows=config_module.describe(current_app.config),
                           dialect=db.engine.dialect.name)


@bp.route("/help/time-zones")
@permission_required(AUTHENTICATED)
def time_zones():
    from zoneinfo import available_timezones

    return render_template("core/time_zones.html", zones=sorted(available_timezones()))


def _error_page(code: int, title: str, message: str):
    return render_template("core/error.html", code=code, title=title, message=message), code


def _record_csrf_refusal(exc: CSRFError) -> None:
    """A form of a logged-in session refused for its CSRF token may be a request forged by another site through the
    user's browser: a security event (Annex 11 12.4). An anonymous one (the login form) is not recorded: there is
    nobody to attribute it to, and anyone could fill the audit trail with them."""
    if not current_user.is_authenticated:
        return
    from core import audit
    from core.db import db, transaction

    user = current_user._get_current_object()
    db.session.rollback()
    with transaction():
        audit.record_event("csrf.refused", subject=user, method=request.method, path=request.path,
                           reason=exc.description)


def _record_refusals(response):
    """after_request: a logged-in person's POST that a service refused for the record's state or rules (editing an
    effective revision, approving one's own change, signing a record changed meanwhile...) is a security event
    (`action.refused`, with the message they were shown), written after the request's own unit of work rolled back.
    Refused input (a field's rule) is not: the form tells the person, and nothing was attempted on a record."""
    refusals = g.pop(REFUSALS, None)
    if not refusals or not current_user.is_authenticated:
        return response
    from core import audit
    from core.db import db, transaction

    user = current_user._get_current_object()
    db.session.rollback()
    with transaction():
        for kind, status, message in dict.fromkeys((type(r).__name__, r.status, r.message) for r in refusals):
            audit.record_event("action.refused", subject=user, method=request.method, path=request.path,
                               status=status, refusal=kind, message=message[:1000])
    return response


def register_error_handlers(app) -> None:
    app.after_request(_record_refusals)

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        _record_csrf_refusal(exc)
        return _error_page(400, "Form expired or not sent from Attest",
                           f"{exc.description} Go back, reload the page and submit the form again.")

    @app.errorhandler(sa_exc.IntegrityError)
    def _conflict(exc):
        # a unique constraint refused a write made at the same moment by someone else (the transaction rolled back)
        logging.getLogger("attest").info("write refused by a constraint: %s", exc.orig)
        message = ("Someone else saved the same change at the same moment, so nothing of yours was saved. Reload "
                   "the page to see the current state and try again if still needed.")
        if request.path.startswith("/api/"):
            response = jsonify({"error": "conflict", "message": message})
            response.status_code = 409
            return response
        return _error_page(409, "Saved by someone else meanwhile", message)

    @app.errorhandler(AttestError)
    def _attest(exc):
        return _error_page(exc.status, "Not possible", exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc):
        if request.path.startswith("/api/"):  # machines get JSON, never an HTML page
            response = jsonify({"error": (exc.name or "error").lower().replace(" ", "_"),
                                "message": exc.description or exc.name})
            response.status_code = exc.code or 500
            response.headers["Cache-Control"] = "no-store"
            return response
        titles = {
            400: "Bad request", 401: "Not logged in", 403: "Permission missing", 404: "Not found",
            405: "Not allowed", 409: "Conflict", 413: "Too large", 422: "Invalid input", 429: "Too many attempts",
        }
        message = exc.description or ""
        if exc.code == 429:
            message = "Too many attempts from your address. Wait a minute and try again."
        if exc.code == 405:
            message = "This address does not accept that kind of request. Records in Attest are never edited or " \
                      "deleted through such requests."
        return _error_page(exc.code or 500, titles.get(exc.code, "Error"), message)

    @app.errorhandler(500)
    def _server(exc):
        return _error_page(500, "Something went wrong",
                           "The request was not completed and nothing was saved. The error was logged; if it "
                           "happens again, tell your system administrator the time shown below.")
