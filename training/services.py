"""Training use cases: people joining and leaving job functions. They flush, never commit."""

from __future__ import annotations

from datetime import date

from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason
from core.errors import NotPermitted, ValidationError
from core.org import JobFunction
from training import engine
from training.models import UserJobFunction


def _require(actor: User | None, action: str) -> None:
    if actor is not None and not actor.can("training.manage"):
        raise NotPermitted(f"{action} needs the permission 'training.manage'.")


def grant_job_function(user: User, job_function_id: int, *, valid_from: date | None = None,
                       actor: User | None) -> UserJobFunction:
    """A new hire or a transfer: the person holds the job function from `valid_from` (default today) and is assigned
    the current revision of every document it requires, in the same transaction."""
    _require(actor, "Assigning a job function")
    function = db.session.get(JobFunction, job_function_id)
    if function is None or not function.active:
        raise ValidationError("job_function_id", "Job function does not exist or is no longer in use.")
    if not user.active:
        raise ValidationError("user_id", f"{user.username} is deactivated.")
    today = now_utc().date()
    valid_from = valid_from or today
    if job_function_id in engine.held_job_functions(user.id, valid_from):
        raise ValidationError("job_function_id", f"{user.username} already holds {function.code}.")
    held = UserJobFunction(user_id=user.id, job_function_id=job_function_id, valid_from=valid_from)
    db.session.add(held)
    db.session.flush()
    default_reason(f"{function.code} assigned to {user.username}")
    if valid_from <= today:
        engine.reconcile_user(user.id, reason=f"No longer required after job function change ({function.code})")
    return held


def end_job_function(held: UserJobFunction, *, valid_to: date | None = None, actor: User | None) -> None:
    """The person stops holding the job function (from `valid_to`, default today): open training no other job
    function of theirs requires is cancelled with the reason."""
    _require(actor, "Ending a job function")
    valid_to = valid_to or now_utc().date()
    if valid_to < held.valid_from:
        raise ValidationError("valid_to", "The end date cannot be before the start date.")
    code = db.session.get(JobFunction, held.job_function_id).code
    default_reason(f"Job function {code} ended")
    held.valid_to = valid_to
    db.session.flush()
    if valid_to <= now_utc().date():
        engine.reconcile_user(held.user_id, reason=f"Job function {code} ended on {valid_to.isoformat()}")


def on_user_deactivated(user: User) -> None:
    """Deactivation hook (core.auth): open training of a person who left is cancelled, its history kept."""
    engine.cancel_all_open(user.id, reason="Account deactivated")
