"""Demo data: a realistic two-site organisation with users in every role. Idempotent.

Core creates the organisation (sites, departments, job functions) and the accounts; which roles the demo people hold
is each package's (register_people), and each package adds its records with a demo loader (register_loader)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import click
import sqlalchemy as sa
from flask import current_app

from core.auth import passwords, services
from core.auth.models import User
from core.db import db, transaction
from core.org import Department, JobFunction, Site

DEMO_PASSWORD = "Attest-Demo-2026!"

SITES = [("BSL", "Basel manufacturing", "Europe/Zurich"), ("RTP", "Durham, North Carolina", "America/New_York")]
DEPARTMENTS = [("QA", "Quality Assurance"), ("QC", "Quality Control"), ("PRD", "Production"),
               ("ENG", "Engineering")]
JOB_FUNCTIONS = [
    ("QA-SPEC", "QA specialist", "QA"), ("QA-MGR", "QA manager", "QA"), ("QA-AUD", "Internal auditor", "QA"),
    ("QA-DOC", "Document controller", "QA"), ("QA-VAL", "Validation specialist", "QA"),
    ("QC-ANA", "QC analyst", "QC"), ("QC-MIC", "Microbiologist", "QC"), ("QC-SUP", "QC supervisor", "QC"),
    ("QC-SAM", "Sampling technician", "QC"), ("QC-STAB", "Stability coordinator", "QC"),
    ("PRD-OPR", "Production operator", "PRD"), ("PRD-ASEP", "Aseptic filling operator", "PRD"),
    ("PRD-PKG", "Packaging operator", "PRD"), ("PRD-SUP", "Production supervisor", "PRD"),
    ("PRD-WH", "Warehouse operator", "PRD"), ("PRD-DISP", "Dispensing operator", "PRD"),
    ("PRD-CLN", "Cleaning technician", "PRD"), ("PRD-PLAN", "Production planner", "PRD"),
    ("ENG-MNT", "Maintenance technician", "ENG"), ("ENG-CAL", "Calibration technician", "ENG"),
    ("ENG-AUT", "Automation engineer", "ENG"), ("ENG-FAC", "Facilities engineer", "ENG"),
    ("ENG-MGR", "Engineering manager", "ENG"), ("ENG-IT", "IT system administrator", "ENG"),
    ("ENG-VAL", "Validation engineer", "ENG"),
]

FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hannah", "Ivan", "Julia", "Karim", "Lea",
         "Marco", "Nina", "Omar", "Paula", "Rafael", "Sofia", "Tomas", "Ursula", "Viktor", "Wen", "Yusuf", "Zoe",
         "Amit", "Beatriz", "Chen", "Dmitri", "Eva", "Fatima", "Georg", "Hiroshi", "Ines", "Jonas", "Keiko"]
LAST = ["Meier", "Schmid", "Keller", "Weber", "Huber", "Brunner", "Garcia", "Smith", "Johnson", "Nguyen", "Rossi",
        "Muller", "Fischer", "Baker", "Okafor", "Kowalski", "Silva", "Tanaka", "Novak", "Larsen", "Dubois", "Moreau",
        "Patel", "Kim", "Lopez", "Martin", "Bernard", "Walker", "Young", "Hall"]


@dataclass(frozen=True)
class DemoLogin:
    """A named demo account printed after loading (README, "Demo logins"); `position` orders the list."""

    username: str
    name: str
    roles: frozenset[str]
    department: str  # department code
    site: str  # site code
    position: int


@dataclass(frozen=True)
class DemoRole:
    """How many of the generated demo people hold a role: `share` of every sum-of-shares people, working in one of
    `departments` (chosen at random when several). With `leads_team`, the first person of the role in a department
    of a site supervises those created after them there."""

    role: str
    share: int
    departments: tuple[str, ...]
    position: int  # order in the mix: the same positions give the same people
    leads_team: bool = False


def _registry(app=None) -> dict[str, list]:
    app = app or current_app
    return app.extensions.setdefault("attest_demo", {"loaders": [], "logins": [], "roles": []})


def register_loader(app, loader: Callable[..., None], *, stage: int) -> None:
    """A package adds its demo records; `flask demo load` runs the loaders by stage, after the organisation and its
    accounts (docs/architecture.md lists the stages: a loader runs after everything it builds on)."""
    loaders = _registry(app)["loaders"]
    if all(existing is not loader for _, existing in loaders):
        loaders.append((stage, loader))
        loaders.sort(key=lambda e: e[0])


def register_people(app, *, logins: Iterable[DemoLogin] = (), roles: Iterable[DemoRole] = ()) -> None:
    """A package names the demo accounts of the roles it introduces: its demo logins and its share of the generated
    people. Core creates them all in one pass with the organisation (one password hash, one transaction)."""
    registry = _registry(app)
    for key, entries in (("logins", logins), ("roles", roles)):
        for entry in entries:
            if entry not in registry[key]:
                registry[key].append(entry)
        registry[key].sort(key=lambda e: e.position)


def load_all(n_users: int = 300, **options) -> None:
    """The organisation, then every domain's demo records; `options` (e.g. documents=150) size them."""
    load(n_users=n_users)
    for _stage, loader in _registry()["loaders"]:
        loader(**options)


def load(n_users: int = 300) -> None:
    rng = random.Random(2026)
    with transaction():
        sites = {}
        for code, name, tz in SITES:
            site = db.session.scalar(sa.select(Site).where(Site.code == code))
            if site is None:
                site = Site(code=code, name=name, timezone=tz)
                db.session.add(site)
            sites[code] = site
        db.session.flush()
        depts = {}
        for site_code, site in sites.items():
            for code, name in DEPARTMENTS:
                dept = db.session.scalar(sa.select(Department).where(Department.site_id == site.id,
                                                                     Department.code == code))
                if dept is None:
                    dept = Department(site_id=site.id, code=code, name=f"{name} {site_code}")
                    db.session.add(dept)
                depts[(site_code, code)] = dept
        db.session.flush()
        existing_jf = set(db.session.scalars(sa.select(JobFunction.code)))
        for code, name, dept_code in JOB_FUNCTIONS:
            if code not in existing_jf:
                db.session.add(JobFunction(code=code, name=name, department_id=depts[("BSL", dept_code)].id))
        db.session.flush()

        existing = set(db.session.scalars(sa.select(User.username)))
        shared_hash = passwords.hash_password(DEMO_PASSWORD)  # one hash for all demo accounts keeps loading fast
        registry = _registry()
        logins, mix = registry["logins"], [r for r in registry["roles"] for _ in range(r.share)]
        leaders = {r.role for r in registry["roles"] if r.leads_team}
        supervisors: dict[tuple[str, str], int] = {}
        plan = [(login.username, login.name, set(login.roles), login.department, login.site) for login in logins]
        spread = max((len(r.departments) for r in registry["roles"]), default=1)
        for i in range(max(0, n_users - len(logins)) if mix else 0):
            role = mix[i % len(mix)]
            site = "BSL" if i % 3 else "RTP"
            pick = rng.randrange(spread)  # one draw per person whatever their role: the same seed, the same people
            dept = role.departments[pick % len(role.departments)]
            first, last = rng.choice(FIRST), rng.choice(LAST)
            plan.append((f"{first}.{last}{i:03d}".lower(), f"{first} {last}", {role.role}, dept, site))
        created = 0
        with click.progressbar(plan, label="Demo users", file=None) as bar:
            for username, name, roles, dept, site in bar:
                if username in existing:
                    continue
                key = (site, dept)
                user, _ = services.create_user(
                    username=username, full_name=name, email=f"{username}@demo.attest.example",
                    roles=roles, site_id=sites[site].id, department_id=depts[key].id,
                    supervisor_id=supervisors.get(key), password_hash=shared_hash,
                    must_change_password=False)
                if roles & leaders and key not in supervisors:
                    supervisors[key] = user.id
                created += 1
    click.echo(f"demo data ready: {len(SITES)} sites, {len(SITES) * len(DEPARTMENTS)} departments, "
               f"{len(JOB_FUNCTIONS)} job functions, {created} users created")
    click.echo(f"demo logins (password {DEMO_PASSWORD}):")
    for login in logins:
        click.echo(f"  {login.username:12} {login.name:20} {', '.join(sorted(login.roles))}")
