"""Who may look at a person's training and job functions beyond their own: everyone with an organisation-wide view,
and a supervisor for their direct reports only."""

from __future__ import annotations

from flask import abort, request
from flask_login import current_user

from core import audit
from core.db import db, transaction

ORG_WIDE_VIEW = ("training.manage", "audit.view")


def sees_everyone(viewer) -> bool:
    return any(viewer.can(code) for code in ORG_WIDE_VIEW)


def require_person_visible(person) -> None:
    """Refuse (403, recorded as a denial) a look at someone who is neither the viewer, nor one of their direct
    reports, unless the viewer sees the whole organisation (coordinators, QA, auditors)."""
    viewer = current_user._get_current_object()
    if person.id == viewer.id or person.supervisor_id == viewer.id or sees_everyone(viewer):
        return
    db.session.rollback()
    with transaction():
        audit.record_event("permission.denied", subject=viewer, permission="training.view_team",
                           scope="not a direct report", method=request.method, path=request.path)
    abort(403, description="Supervisors see the training of their own direct reports only.")
