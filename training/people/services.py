"""Training use cases: people joining and leaving job functions, and leaving or coming back altogether. They flush,
never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from core.auth import services as accounts
from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason
from core.errors import NotPermitted, ValidationError
from core.org import JobFunction
from training import engine
from training.models import SOURCE_JOB_FUNCTION, UserJobFunction


@dataclass(frozen=True)
class JobFunctionChange:
    """What granting or ending a job function did: the held row, and the training assignments the reconciliation
    created and cancelled in the same transaction (0 and 0 for a day that has not come yet)."""

    held: UserJobFunction
    created: int = 0
    cancelled: int = 0


def _require(actor: User | None, action: str) -> None:
    if actor is not None and not actor.can("training.manage"):
        raise NotPermitted(f"{action} needs the permission 'training.manage'.")


def grant_job_function(user: User, job_function_id: int, *, valid_from: date | None = None,
                       actor: User | None, source_type: str = SOURCE_JOB_FUNCTION) -> JobFunctionChange:
    """A new hire or a transfer: the person holds the job function from `valid_from` (default today) and is assigned
    the current revision of every document it requires, in the same transaction. Refused when the new period would
    overlap one already recorded for the same job function (a back-dated grant included)."""
    _require(actor, "Assigning a job function")
    function = db.session.get(JobFunction, job_function_id)
    if function is None or not function.active:
        raise ValidationError("job_function_id", "Job function does not exist or is no longer in use.")
    if not user.active:
        raise ValidationError("user_id", f"{user.username} is deactivated.")
    today = now_utc().date()
    valid_from = valid_from or today
    overlapping = db.session.scalars(sa.select(UserJobFunction).where(
        UserJobFunction.user_id == user.id, UserJobFunction.job_function_id == job_function_id,
        sa.or_(UserJobFunction.valid_to.is_(None), sa.and_(UserJobFunction.valid_to > valid_from,
                                                           UserJobFunction.valid_to > UserJobFunction.valid_from)))
        .order_by(UserJobFunction.valid_from)).first()
    if overlapping is not None:
        until = f" until {overlapping.valid_to.isoformat()}" if overlapping.valid_to else ""
        raise ValidationError("job_function_id", f"{user.username} already holds {function.code} (from "
                                                 f"{overlapping.valid_from.isoformat()}{until}).")
    held = UserJobFunction(user_id=user.id, job_function_id=job_function_id, valid_from=valid_from)
    db.session.add(held)
    db.session.flush()
    default_reason(f"{function.code} assigned to {user.username}")
    if valid_from > today:
        return JobFunctionChange(held)
    created, cancelled = engine.reconcile_user(
        user.id, reason=f"No longer required after job function change ({function.code})", source_type=source_type)
    return JobFunctionChange(held, created, cancelled)


def end_job_function(held: UserJobFunction, *, valid_to: date | None = None,
                     actor: User | None) -> JobFunctionChange:
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
    if valid_to > now_utc().date():
        return JobFunctionChange(held)
    created, cancelled = engine.reconcile_user(held.user_id,
                                               reason=f"Job function {code} ended on {valid_to.isoformat()}")
    return JobFunctionChange(held, created, cancelled)


def deactivate_person(user: User, *, actor: User | None) -> None:
    """A person leaves: their account is deactivated (core: sessions end, API tokens revoked) and their open training
    is cancelled with the reason "Account deactivated", its history kept; all in the caller's transaction."""
    accounts.deactivate_account(user, actor=actor)
    engine.cancel_all_open(user.id, reason="Account deactivated")


def reactivate_person(user: User) -> None:
    """A person comes back: their account works again and they are assigned again what the job functions they hold
    require (training they completed on the current versions still counts)."""
    accounts.reactivate_account(user)
    engine.reconcile_user(user.id, reason="Account reactivated")


def reconcile_due(today: date | None = None, *, days: int = 7) -> tuple[int, int, int]:
    """Apply job function changes dated ahead: everyone whose job function started or ended in the last `days` days
    (today included) has their training reconciled with what they hold today. Idempotent, so a daily run that
    misses a day or two catches up. Returns (people, created, cancelled)."""
    from datetime import timedelta

    today = today or now_utc().date()
    since = today - timedelta(days=days - 1)
    changed = sorted(set(db.session.scalars(sa.select(UserJobFunction.user_id).join(
        User, User.id == UserJobFunction.user_id).where(
        User.active.is_(True),
        sa.or_(UserJobFunction.valid_from.between(since, today), UserJobFunction.valid_to.between(since, today))))))
    default_reason("Job function changes dated ahead took effect")
    created = cancelled = 0
    for user_id in changed:
        made, closed = engine.reconcile_user(user_id, reason="Job function ended (dated change took effect)")
        created += made
        cancelled += closed
    return len(changed), created, cancelled
