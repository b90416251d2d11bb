"""Job function use cases (training.manage). They flush, never commit: callers wrap them in
core.db.transaction(reason=...). The model is versioned, so every change is in the audit trail; a change of an
existing job function needs a reason for change. Codes follow the organisation's rules (core.org.services) and are
never changed once created: HR files, the command line and people refer to them.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.errors import InvalidTransition, ValidationError
from core.org import Department, JobFunction
from core.org import services as org
from training.models import UserJobFunction

MANAGE = "training.manage"


def _department(department_id: int | None) -> Department | None:
    if department_id is None:
        return None
    department = db.session.get(Department, department_id)
    if department is None:
        raise ValidationError("department_id", "Department does not exist.")
    return department


def create_job_function(*, code: str, name: str, department_id: int | None, actor: User | None) -> JobFunction:
    org.require(actor, MANAGE, "Creating a job function")
    code, name = org.normalise_code(code), (name or "").strip()
    org.check("code", org.code_problem(code))
    org.check("name", org.name_problem(name))
    department = _department(department_id)
    if db.session.scalar(sa.select(JobFunction.id).where(JobFunction.code == code)) is not None:
        raise ValidationError("code", f"A job function with code {code} already exists (codes are never reused, "
                                      f"even after deactivation).")
    function = JobFunction(code=code, name=name, department_id=department.id if department else None, active=True)
    db.session.add(function)
    db.session.flush()
    return function


def update_job_function(function: JobFunction, *, name: str, department_id: int | None,
                        actor: User | None) -> bool:
    """Rename a job function or move it to another department (its code stays). Returns whether anything changed."""
    org.require(actor, MANAGE, "Changing a job function")
    name = (name or "").strip()
    org.check("name", org.name_problem(name))
    department = _department(department_id)
    new_department_id = department.id if department else None
    if (name, new_department_id) == (function.name, function.department_id):
        return False
    org.require_reason(f"change job function {function.code}")
    function.name = name
    function.department_id = new_department_id
    db.session.flush()
    return True


def holder_counts(job_function_ids: list[int] | None = None, *, on: date | None = None,
                  including_later: bool = False) -> dict[int, int]:
    """job function id -> number of active people holding it on day `on` (default today); with `including_later`,
    also those who hold it from a later day (a job function is in use as long as anyone holds it from then on)."""
    on = on or now_utc().date()
    held = UserJobFunction
    still = sa.or_(held.valid_to.is_(None), held.valid_to > on)
    started = sa.true() if including_later else held.valid_from <= on
    query = (sa.select(held.job_function_id, sa.func.count(sa.distinct(held.user_id)))
             .join(User, User.id == held.user_id)
             .where(User.active.is_(True), still, started,
                    sa.or_(held.valid_to.is_(None), held.valid_to > held.valid_from))
             .group_by(held.job_function_id))
    if job_function_ids is not None:
        query = query.where(held.job_function_id.in_(job_function_ids))
    return dict(db.session.execute(query).all())


def deactivate_job_function(function: JobFunction, *, actor: User | None) -> None:
    """A job function no longer in use: nobody can be given it any more. Refused while anyone (active) holds it today
    or from a later day: their training follows from it, so they are moved to another job function first."""
    org.require(actor, MANAGE, "Deactivating a job function")
    if not function.active:
        raise InvalidTransition(f"Job function {function.code} is already deactivated.")
    holders = holder_counts([function.id], including_later=True).get(function.id, 0)
    if holders:
        people = "1 person holds" if holders == 1 else f"{holders} people hold"
        raise InvalidTransition(f"Job function {function.code} cannot be deactivated: {people} it today or from a "
                                f"later day. End it for them first (People & job functions), granting them their "
                                f"new job function before, so that training they still need stays open.")
    org.require_reason(f"deactivate job function {function.code}")
    function.active = False
    db.session.flush()


def reactivate_job_function(function: JobFunction, *, actor: User | None) -> None:
    org.require(actor, MANAGE, "Reactivating a job function")
    if function.active:
        raise InvalidTransition(f"Job function {function.code} is already in use.")
    org.require_reason(f"reactivate job function {function.code}")
    function.active = True
    db.session.flush()
