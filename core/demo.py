"""Demo data: a realistic two-site organisation with users in every role. Idempotent; later features extend it."""

from __future__ import annotations

import random

import click
import sqlalchemy as sa

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

# (username, printed name, roles, department code, site code): the demo logins printed after loading
DEMO_LOGINS = [
    ("admin", "Morgan Keller", {"system_admin"}, "ENG", "BSL"),
    ("qa.approver", "Quinn Q. Approver", {"qa_approver"}, "QA", "BSL"),
    ("author", "Alice Author", {"document_author"}, "QA", "BSL"),
    ("coordinator", "Chris Coordinator", {"training_coordinator"}, "QA", "BSL"),
    ("supervisor", "Sara Supervisor", {"supervisor"}, "PRD", "BSL"),
    ("operator", "Oscar Operator", {"operator"}, "PRD", "BSL"),
    ("validation", "Vera Validation", {"validation_engineer"}, "QA", "BSL"),
    ("auditor", "Ian Inspector", {"auditor"}, "QA", "BSL"),
]

FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hannah", "Ivan", "Julia", "Karim", "Lea",
         "Marco", "Nina", "Omar", "Paula", "Rafael", "Sofia", "Tomas", "Ursula", "Viktor", "Wen", "Yusuf", "Zoe",
         "Amit", "Beatriz", "Chen", "Dmitri", "Eva", "Fatima", "Georg", "Hiroshi", "Ines", "Jonas", "Keiko"]
LAST = ["Meier", "Schmid", "Keller", "Weber", "Huber", "Brunner", "Garcia", "Smith", "Johnson", "Nguyen", "Rossi",
        "Muller", "Fischer", "Baker", "Okafor", "Kowalski", "Silva", "Tanaka", "Novak", "Larsen", "Dubois", "Moreau",
        "Patel", "Kim", "Lopez", "Martin", "Bernard", "Walker", "Young", "Hall"]
# most people on a site are operators; every role appears among the generated users
ROLE_MIX = ["operator"] * 12 + ["supervisor"] * 2 + ["document_author", "training_coordinator",
                                                       "validation_engineer", "qa_approver", "auditor"]


_LOADERS: list = []


def register_loader(loader) -> None:
    """Domain packages add their demo data; `flask demo load` runs every loader after the organisation."""
    if loader not in _LOADERS:
        _LOADERS.append(loader)


def load_all(n_users: int = 300, **options) -> None:
    """The organisation, then every domain's demo records; `options` (e.g. documents=150) size them."""
    load(n_users=n_users)
    for loader in _LOADERS:
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
        supervisors: dict[tuple[str, str], int] = {}
        plan = []
        for username, name, roles, dept, site in DEMO_LOGINS:
            plan.append((username, name, roles, dept, site))
        for i in range(max(0, n_users - len(DEMO_LOGINS))):
            role = ROLE_MIX[i % len(ROLE_MIX)]
            site = "BSL" if i % 3 else "RTP"
            dept = {"operator": "PRD", "supervisor": rng.choice(["PRD", "QC"]), "document_author": "QA",
                    "training_coordinator": "QA", "validation_engineer": "ENG", "qa_approver": "QA",
                    "auditor": "QA"}[role]
            first, last = rng.choice(FIRST), rng.choice(LAST)
            plan.append((f"{first}.{last}{i:03d}".lower(), f"{first} {last}", {role}, dept, site))
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
                if "supervisor" in roles and key not in supervisors:
                    supervisors[key] = user.id
                created += 1
    click.echo(f"demo data ready: {len(SITES)} sites, {len(SITES) * len(DEPARTMENTS)} departments, "
               f"{len(JOB_FUNCTIONS)} job functions, {created} users created")
    click.echo(f"demo logins (password {DEMO_PASSWORD}):")
    for username, name, roles, _dept, _site in DEMO_LOGINS:
        click.echo(f"  {username:12} {name:20} {', '.join(sorted(roles))}")
