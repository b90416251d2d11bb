"""The signing ceremony as the web pages run it, shared by every signed record's page.

Step one authenticates the signer in a unit of work of its own, committed whatever the outcome, so that a failure is
audited and counts toward lockout; step two runs the business action (which signs) in a second unit of work that
rolls back whole on any refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, url_for
from flask_login import current_user

from core.db import db, transaction
from core.errors import AttestError, ValidationError
from signatures import services

LOCKED = "Signature refused. Your account is now locked after repeated failed attempts."
REFUSED = ("Signature refused: the password or authentication code is not correct. Failed attempts count toward "
           "locking your account.")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int = 200
    response: Any = None  # a response to return as it is (e.g. to the login page after a lockout)


def perform(form, action: Callable[[Any, services.SignerProof], Any]) -> Outcome:
    """Run the ceremony for a validated signing form; `action(user, proof)` does the signed work.

    Refusals are shown to the user (a field error when the refusal names a field of the form, else a message) and
    leave nothing written."""
    user = current_user._get_current_object()
    services.precheck(user, form.password.data)
    with transaction():
        proof = services.authenticate(user, password=form.password.data, totp_code=form.totp_code.data)
    if proof is None:
        if user.security.locked:
            flash(LOCKED, "danger")
            return Outcome(False, 302, redirect(url_for("auth.login")))
        flash(REFUSED, "danger")
        return Outcome(False, 401)
    try:
        with transaction():
            action(user, proof)
    except ValidationError as exc:
        db.session.rollback()
        field = getattr(form, exc.field, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, exc.message]
        else:
            flash(exc.message, "danger")
        return Outcome(False, 422)
    except AttestError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return Outcome(False, exc.status)
    return Outcome(True)
