"""Reading what a page or the database shows, for web tests: flash messages, field errors, audit events."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from core.audit import AuditEvent
from core.db import db

ALERT_RE = re.compile(r'<div class="alert alert-[a-z]+" role="alert">(.*?)</div>', re.S)
FIELD_ERROR_RE = re.compile(r'<div class="invalid-feedback d-block">(.*?)</div>', re.S)


def alerts(response) -> list[str]:
    """The flash messages a page shows, as the user reads them."""
    return [html.unescape(m.strip()) for m in ALERT_RE.findall(response.get_data(as_text=True))]


def field_errors(response) -> list[str]:
    """The error messages shown under form fields."""
    return [html.unescape(m.strip()) for m in FIELD_ERROR_RE.findall(response.get_data(as_text=True))]


def events(event_type: str, user=None) -> list[AuditEvent]:
    """Audit events of one type (about one user, when given), oldest first."""
    stmt = sa.select(AuditEvent).where(AuditEvent.event_type == event_type).order_by(AuditEvent.id)
    if user is not None:
        stmt = stmt.where(AuditEvent.subject_user_id == user.id)
    return list(db.session.scalars(stmt))


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def fresh(user):
    """The user as the database holds it now (not as this test's session last saw it)."""
    from core.auth.models import User

    db.session.expire_all()
    return db.session.get(User, user.id)
