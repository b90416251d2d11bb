"""Organisation use cases: sites and departments, and the rules every organisation code and name follows. They
flush, never commit: callers wrap them in core.db.transaction(reason=...). The models are versioned, so every change
is in the audit trail; a change of an existing record needs a reason for change.

Sites and departments are account administration (users.manage). Job functions are organisation records too
(core.org.models), but who holds them and what they require is training's: their use cases and pages are
training.job_functions. Codes are never changed once created: HR files, the command line and people refer to them.
"""

from __future__ import annotations

import re
from functools import cache
from zoneinfo import available_timezones

import sqlalchemy as sa

from core.auth.models import User
from core.db import db
from core.errors import NotPermitted, ValidationError
from core.org import Department, Site

CODE_RE = re.compile(r"^[A-Z0-9](?:[A-Z0-9-]{0,30}[A-Z0-9])?$")
NAME_MIN, NAME_MAX = 3, 200


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


def check(field: str, problem: str | None) -> None:
    if problem:
        raise ValidationError(field, problem)


def require(actor: User | None, permission: str, action: str) -> None:
    if actor is not None and not actor.can(permission):
        raise NotPermitted(f"{action} needs the permission '{permission}'.")


def require_reason(action: str) -> None:
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", f"A reason for change is required to {action}.")


# --- sites and departments (users.manage) ---------------------------------------------------------------------------


def create_site(*, code: str, name: str, timezone: str, actor: User | None) -> Site:
    require(actor, "users.manage", "Creating a site")
    code, name, timezone = normalise_code(code), (name or "").strip(), (timezone or "").strip()
    check("code", code_problem(code))
    check("name", name_problem(name))
    check("timezone", timezone_problem(timezone))
    if db.session.scalar(sa.select(Site.id).where(Site.code == code)) is not None:
        raise ValidationError("code", f"A site with code {code} already exists.")
    site = Site(code=code, name=name, timezone=timezone)
    db.session.add(site)
    db.session.flush()
    return site


def create_department(*, site_id: int | None, code: str, name: str, actor: User | None) -> Department:
    require(actor, "users.manage", "Creating a department")
    site = db.session.get(Site, site_id) if site_id else None
    if site is None:
        raise ValidationError("site_id", "Choose the site the department belongs to.")
    code, name = normalise_code(code), (name or "").strip()
    check("code", code_problem(code))
    check("name", name_problem(name))
    taken = sa.select(Department.id).where(Department.site_id == site.id, Department.code == code)
    if db.session.scalar(taken) is not None:
        raise ValidationError("code", f"Site {site.code} already has a department with code {code}.")
    department = Department(site_id=site.id, code=code, name=name)
    db.session.add(department)
    db.session.flush()
    return department
