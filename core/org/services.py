"""Organisation use cases: sites, departments and job functions. They flush, never commit: callers wrap them in
core.db.transaction(reason=...). The models are versioned, so every change is in the audit trail; a change of an
existing record needs a reason for change.

Sites and departments are account administration (users.manage); job functions belong to the training matrix
(training.manage). Codes are never changed once created: HR files, the command line and people refer to them.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from zoneinfo import available_timezones

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.errors import InvalidTransition, NotPermitted, ValidationError
from core.org import Department, JobFunction, Site

CODE_RE = re.compile(r"^[A-Z0-9](?:[A-Z0-9-]{0,30}[A-Z0-9])?$")
NAME_MIN, NAME_MAX = 3, 200

# Who holds a job function is a training record (training.models.UserJobFunction); core sits below training and
# reads that table by name only, as foreign keys across packages do.
_HELD = sa.table("training_user_job_function", sa.column("user_id", sa.Integer),
                 sa.column("job_function_id", sa.Integer), sa.column("valid_from", sa.Date),
                 sa.column("valid_to", sa.Date))


# --- rules, shared by the forms (all problems at once) and the services (the last word) ----------------------------


def normalise_code(raw: str | None) -> str:
    return (raw or "").strip().upper()


def code_problem(code: str | None) -> str | None:
    code = normalise_code(code)
    if not code:
        return "Code is required."
    if not CODE_RE.match(code):
        return (f"Code must be 1 to 32 upper-case letters, digits or dashes, starting and ending with a letter or "
                f"digit (for example OP-MIX), not {code!r}.")
    return None


def name_problem(name: str | None) -> str | None:
    name = (name or "").strip()
    if not NAME_MIN <= len(name) <= NAME_MAX:
        return f"Name must be {NAME_MIN} to {NAME_MAX} characters (it has {len(name)})."
    return None


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone_problem(zone: str | None) -> str | None:
    zone = (zone or "").strip()
    if not zone:
        return "Time zone is required (an IANA name such as Europe/Zurich)."
    if zone not in _zones():
        return f"Time zone must be an IANA name such as Europe/Zurich or America/New_York, not {zone!r}."
    return None


def _check(field: str, problem: str | None) -> None:
    if problem:
        raise ValidationError(field, problem)


def _require(actor: User | None, permission: str, action: str) -> None:
    if actor is not None and not actor.can(permission):
        raise NotPermitted(f"{action} needs the permission '{permission}'.")


def _require_reason(action: str) -> None:
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", f"A reason for change is required to {action}.")


# --- sites and departments (users.manage) ---------------------------------------------------------------------------


def create_site(*, code: str, name: str, timezone: str, actor: User | None) -> Site:
    _require(actor, "users.manage", "Creating a site")
    code, name, timezone = normalise_code(code), (name or "").strip(), (timezone or "").strip()
    _check("code", code_problem(code))
    _check("name", name_problem(name))
    _check("timezone", timezone_problem(timezone))
    if db.session.scalar(sa.select(Site.id).where(Site.code == code)) is not None:
        raise ValidationError("code", f"A site with code {code} already exists.")
    site = Site(code=code, name=name, timezone=timezone)
    db.session.add(site)
    db.session.flush()
    return site


def create_department(*, site_id: int | None, code: str, name: str, actor: User | None) -> Department:
    _require(actor, "users.manage", "Creating a department")
    site = db.session.get(Site, site_id) if site_id else None
    if site is None:
        raise ValidationError("site_id", "Choose the site the department belongs to.")
    code, name = normalise_code(code), (name or "").strip()
    _check("code", code_problem(code))
    _check("name", name_problem(name))
    taken = sa.select(Department.id).where(Department.site_id == site.id, Department.code == code)
    if db.session.scalar(taken) is not None:
        raise ValidationError("code", f"Site {site.code} already has a department with code {code}.")
    department = Department(site_id=site.id, code=code, name=name)
    db.session.add(department)
    db.session.flush()
    return department


# --- job functions (training.manage) --------------------------------------------------------------------------------


def _department(department_id: int | None) -> Department | None:
    if department_id is None:
        return None
    department = db.session.get(Department, department_id)
    if department is None:
        raise ValidationError("department_id", "Department does not exist.")
    return department


def create_job_function(*, code: str, name: str, department_id: int | None, actor: User | None) -> JobFunction:
    _require(actor, "training.manage", "Creating a job function")
    code, name = normalise_code(code), (name or "").strip()
    _check("code", code_problem(code))
    _check("name", name_problem(name))
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
    _require(actor, "training.manage", "Changing a job function")
    name = (name or "").strip()
    _check("name", name_problem(name))
    department = _department(department_id)
    new_department_id = department.id if department else None
    if (name, new_department_id) == (function.name, function.department_id):
        return False
    _require_reason(f"change job function {function.code}")
    function.name = name
    function.department_id = new_department_id
    db.session.flush()
    return True


def holder_counts(job_function_ids: list[int] | None = None, *, on: date | None = None,
                  including_later: bool = False) -> dict[int, int]:
    """job function id -> number of active people holding it on day `on` (default today); with `including_later`,
    also those who hold it from a later day (a job function is in use as long as anyone holds it from then on)."""
    on = on or now_utc().date()
    user = User.__table__.c
    still = sa.or_(_HELD.c.valid_to.is_(None), _HELD.c.valid_to > on)
    started = sa.true() if including_later else _HELD.c.valid_from <= on
    query = (sa.select(_HELD.c.job_function_id, sa.func.count(sa.distinct(_HELD.c.user_id)))
             .join(User.__table__, user.id == _HELD.c.user_id)
             .where(user.active.is_(True), still, started,
                    sa.or_(_HELD.c.valid_to.is_(None), _HELD.c.valid_to > _HELD.c.valid_from))
             .group_by(_HELD.c.job_function_id))
    if job_function_ids is not None:
        query = query.where(_HELD.c.job_function_id.in_(job_function_ids))
    return dict(db.session.execute(query).all())


def deactivate_job_function(function: JobFunction, *, actor: User | None) -> None:
    """A job function no longer in use: nobody can be given it any more. Refused while anyone (active) holds it today
    or from a later day: their training follows from it, so they are moved to another job function first."""
    _require(actor, "training.manage", "Deactivating a job function")
    if not function.active:
        raise InvalidTransition(f"Job function {function.code} is already deactivated.")
    holders = holder_counts([function.id], including_later=True).get(function.id, 0)
    if holders:
        people = "1 person holds" if holders == 1 else f"{holders} people hold"
        raise InvalidTransition(f"Job function {function.code} cannot be deactivated: {people} it today or from a "
                                f"later day. End it for them first (People & job functions), granting them their "
                                f"new job function before, so that training they still need stays open.")
    _require_reason(f"deactivate job function {function.code}")
    function.active = False
    db.session.flush()


def reactivate_job_function(function: JobFunction, *, actor: User | None) -> None:
    _require(actor, "training.manage", "Reactivating a job function")
    if function.active:
        raise InvalidTransition(f"Job function {function.code} is already in use.")
    _require_reason(f"reactivate job function {function.code}")
    function.active = True
    db.session.flush()
