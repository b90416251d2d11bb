"""The organisation pages: sites and departments (administrators), job functions (training coordinators), through the
real pages (CSRF, permissions, messages), and what the audit trail shows an inspector afterwards."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditTransaction
from core.audit.views import record_history
from core.db import db, transaction
from core.org import Department, JobFunction, Site
from core.testing.pages import alerts, count, events, field_errors
from testkit.plugin import post_form
from tests.web.test_read_and_sign import client_for, text_of
from training.models import UserJobFunction

ROW_RE = re.compile(r"<tr>(.*?)</tr>", re.S)
CELL_RE = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
TAG_RE = re.compile(r"<[^>]+>")


def history_rows(response) -> list[list[str]]:
    """The rows of the audit-trail table as an inspector reads them (When, Who, What, Field, Old, New, Why)."""
    page = response.get_data(as_text=True)
    table = page[page.index("Audit trail of this job function"):]
    return [[" ".join(html.unescape(TAG_RE.sub(" ", cell)).split()) for cell in CELL_RE.findall(row)]
            for row in ROW_RE.findall(table)]


def site_form(**values) -> dict:
    return {"code": "BSL", "name": "Basel", "timezone": "Europe/Zurich", **values}


def function_form(**values) -> dict:
    return {"code": "OP-MIX", "name": "Mixing operator", "department_id": "", **values}


def fresh_function(function_id: int) -> JobFunction:
    db.session.expire_all()
    return db.session.get(JobFunction, function_id)


@pytest.fixture
def admin_c(app, users):
    return client_for(app, users["system_admin"])


@pytest.fixture
def coordinator_c(app, users):
    return client_for(app, users["training_coordinator"])


@pytest.fixture
def department(app):
    with transaction():
        site = Site(code="MAIN", name="Main site", timezone="Europe/Zurich")
        dept = Department(site=site, code="PRD", name="Production")
        db.session.add_all([site, dept])
    return dept


@pytest.fixture
def function(app, department):
    with transaction():
        jf = JobFunction(code="OP-MIX", name="Mixing operator", department_id=department.id)
        db.session.add(jf)
    return jf


def hold(user, function, *, since_days: int = 10) -> UserJobFunction:
    with transaction():
        held = UserJobFunction(user_id=user.id, job_function_id=function.id,
                               valid_from=clock.now_utc().date() - timedelta(days=since_days))
        db.session.add(held)
    return held


# --- sites and departments ------------------------------------------------------------------------------------------


def test_an_administrator_creates_a_site_and_its_department_and_everyone_sees_them(app, users, admin_c):
    response = post_form(admin_c, "/org/sites/new", site_form(code=" bsl ", name="Basel plant"))
    assert response.status_code == 303
    site = db.session.scalar(sa.select(Site))
    assert (site.code, site.name, site.timezone) == ("BSL", "Basel plant", "Europe/Zurich")
    response = post_form(admin_c, "/org/departments/new", {"site_id": site.id, "code": "qc-lab", "name": "QC lab"})
    assert response.status_code == 303
    assert "Department QC-LAB (QC lab) was created at site BSL." in alerts(admin_c.get("/org/"))
    page = text_of(client_for(app, users["operator"]).get("/org/"))
    assert "BSL Basel plant Europe/Zurich QC-LAB — QC lab" in page
    department = db.session.scalar(sa.select(Department))
    trail = record_history(Site, site.id) + record_history(Department, department.id)
    assert [(e.tx.username, [c.action for c in e.changes]) for e in trail] == [("system.admin", ["Created"])] * 2


def test_an_invalid_site_is_shown_field_by_field_and_nothing_is_written(admin_c):
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction))
    response = post_form(admin_c, "/org/sites/new", site_form(code="B SL", name="Ba", timezone="Mars/Olympus"))
    assert response.status_code == 422
    errors = field_errors(response)
    assert "Code: Code must be 1 to 32 upper-case letters, digits or dashes, starting and ending with a letter or " \
           "digit (for example OP-MIX), not 'B SL'." in errors
    assert "Name: Name must be 3 to 200 characters (it has 2)." in errors
    assert ("Time zone: Time zone must be an IANA name such as Europe/Zurich or America/New_York, not "
            "'Mars/Olympus'.") in errors
    assert count(Site) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction)) == before


def test_a_site_code_is_unique_and_a_department_code_unique_within_its_site(admin_c, department):
    response = post_form(admin_c, "/org/sites/new", site_form(code="main"))
    assert response.status_code == 422
    assert field_errors(response) == ["Code: A site with code MAIN already exists."]
    assert count(Site) == 1
    response = post_form(admin_c, "/org/departments/new", {"site_id": department.site_id, "code": "PRD",
                                                           "name": "Production two"})
    assert response.status_code == 422
    assert field_errors(response) == ["Code: Site MAIN already has a department with code PRD."]
    post_form(admin_c, "/org/sites/new", site_form(code="RTP", name="Raleigh", timezone="America/New_York"))
    other = db.session.scalar(sa.select(Site).where(Site.code == "RTP"))
    response = post_form(admin_c, "/org/departments/new", {"site_id": other.id, "code": "PRD", "name": "Production"})
    assert response.status_code == 303
    assert count(Department) == 2


def test_a_department_needs_a_site(admin_c):
    response = post_form(admin_c, "/org/departments/new", {"site_id": "", "code": "QA", "name": "Quality"})
    assert response.status_code == 422
    assert field_errors(response) == ["Site: Choose the site the department belongs to."]
    assert count(Department) == 0


# --- job functions --------------------------------------------------------------------------------------------------


def test_a_coordinator_creates_a_job_function_and_its_page_shows_it(coordinator_c, department):
    response = post_form(coordinator_c, "/org/job-functions/new",
                         function_form(code="op-pkg", name="Packaging operator", department_id=department.id))
    assert response.status_code == 303
    function = db.session.scalar(sa.select(JobFunction))
    assert (function.code, function.name, function.department_id, function.active) == (
        "OP-PKG", "Packaging operator", department.id, True)
    page = coordinator_c.get(response.headers["Location"])
    assert "Job function OP-PKG (Packaging operator) was created." in alerts(page)
    assert "Department MAIN / PRD — Production Status In use Holders 0 today" in text_of(page)


def test_an_invalid_or_duplicate_job_function_is_refused_and_nothing_is_written(coordinator_c, function):
    response = post_form(coordinator_c, "/org/job-functions/new", function_form(code="-MIX", name="  ab "))
    assert response.status_code == 422
    assert [e.split(":")[0] for e in field_errors(response)] == ["Code", "Name"]
    response = post_form(coordinator_c, "/org/job-functions/new", function_form(code="op-mix", name="Other mixer"))
    assert response.status_code == 422
    assert field_errors(response) == ["Code: A job function with code OP-MIX already exists (codes are never "
                                      "reused, even after deactivation)."]
    response = post_form(coordinator_c, "/org/job-functions/new", function_form(code="OP-NEW", department_id="999"))
    assert field_errors(response) == ["Department: Department does not exist."]
    assert count(JobFunction) == 1


def test_renaming_needs_a_reason_and_the_inspector_sees_old_and_new_name(app, users, coordinator_c, function):
    path = f"/org/job-functions/{function.id}/edit"
    response = post_form(coordinator_c, path, {"name": "Blending operator", "department_id": function.department_id,
                                               "reason": ""})
    assert response.status_code == 422
    assert "Reason for change: Reason for change is required." in field_errors(response)
    assert fresh_function(function.id).name == "Mixing operator"
    response = post_form(coordinator_c, path, {"name": "Blending operator", "department_id": function.department_id,
                                               "reason": "Renamed after the line was rebuilt (CC-0042)"})
    assert response.status_code == 303
    assert fresh_function(function.id).name == "Blending operator"
    assert fresh_function(function.id).code == "OP-MIX"
    rows = history_rows(client_for(app, users["auditor"]).get(f"/org/job-functions/{function.id}"))
    changed = [r for r in rows if len(r) == 7 and r[2].startswith("Changed")]
    assert len(changed) == 1
    _when, who, _what, field, old, new, why = changed[0]
    assert (field, old, new, why) == ("Name", "Mixing operator", "Blending operator",
                                      "Renamed after the line was rebuilt (CC-0042)")
    assert who == "Training Coordinator (training.coordinator)"


def test_saving_an_unchanged_job_function_writes_nothing(coordinator_c, function):
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction))
    response = post_form(coordinator_c, f"/org/job-functions/{function.id}/edit",
                         {"name": "Mixing operator", "department_id": function.department_id, "reason": "No change"})
    assert response.status_code == 303
    assert "Nothing was changed." in alerts(coordinator_c.get(response.headers["Location"]))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction)) == before


def test_a_job_function_someone_holds_cannot_be_deactivated(coordinator_c, users, function):
    hold(users["operator"], function)
    hold(users["supervisor"], function, since_days=-5)  # from a later day
    path = f"/org/job-functions/{function.id}"
    response = post_form(coordinator_c, f"{path}/deactivate", {"reason": "Line closed"}, token_from=path)
    assert response.status_code == 303
    assert alerts(coordinator_c.get(path)) == [
        "Job function OP-MIX cannot be deactivated: 2 people hold it today or from a later day. End it for them "
        "first (People & job functions), granting them their new job function before, so that training they still "
        "need stays open."]
    assert fresh_function(function.id).active is True


def test_a_job_function_held_only_by_deactivated_or_former_holders_is_deactivated_and_reactivated(
        coordinator_c, users, make_user, function):
    held = hold(users["operator"], function, since_days=30)
    with transaction(reason="Moved"):
        held.valid_to = clock.now_utc().date() - timedelta(days=1)
    leaver = make_user("left.company", roles={"operator"})
    hold(leaver, function)
    with transaction(reason="Left the company"):
        leaver.active = False
    path = f"/org/job-functions/{function.id}"
    assert "Holders 0 today" in text_of(coordinator_c.get(path))
    response = post_form(coordinator_c, f"{path}/deactivate", {"reason": ""}, token_from=path)
    assert "Reason for change: Reason for change is required." in alerts(coordinator_c.get(path))
    assert fresh_function(function.id).active is True
    post_form(coordinator_c, f"{path}/deactivate", {"reason": "Mixing moved to the new line"}, token_from=path)
    page = coordinator_c.get(path)
    assert "Job function OP-MIX was deactivated: it can no longer be given to anyone." in alerts(page)
    assert fresh_function(function.id).active is False
    response = post_form(coordinator_c, f"{path}/reactivate", {"reason": "Old line restarted"}, token_from=path)
    assert response.status_code == 303
    assert fresh_function(function.id).active is True
    trail = [(e.tx.username, e.tx.reason, e.changes[0].fields) for e in record_history(JobFunction, function.id)]
    assert trail[1:] == [("training.coordinator", "Mixing moved to the new line", [("Active", "Yes", "No")]),
                         ("training.coordinator", "Old line restarted", [("Active", "No", "Yes")])]


def test_the_organisation_page_counts_todays_holders(app, users, function):
    hold(users["operator"], function)
    hold(users["supervisor"], function, since_days=-5)
    page = text_of(client_for(app, users["operator"]).get("/org/"))
    assert "OP-MIX Mixing operator MAIN / PRD In use 1" in page
    assert "New job function" not in page and "New site" not in page


# --- who may change what --------------------------------------------------------------------------------------------


def test_a_coordinator_manages_job_functions_but_not_sites_or_departments(coordinator_c, users, department):
    response = post_form(coordinator_c, "/org/sites/new", site_form(code="NEW"), token_from="/org/")
    assert response.status_code == 403
    response = post_form(coordinator_c, "/org/departments/new",
                         {"site_id": department.site_id, "code": "NEW", "name": "New department"}, token_from="/org/")
    assert response.status_code == 403
    assert (count(Site), count(Department)) == (1, 1)
    denied = [json.loads(e.detail)["path"] for e in events("permission.denied", users["training_coordinator"])]
    assert denied == ["/org/sites/new", "/org/departments/new"]


@pytest.mark.parametrize("role", ["operator", "system_admin", "supervisor"])
def test_people_without_training_manage_cannot_change_job_functions(app, users, function, role):
    client = client_for(app, users[role])
    base = f"/org/job-functions/{function.id}"
    for path, data in [("/org/job-functions/new", function_form(code="OP-X")),
                       (f"{base}/edit", {"name": "Renamed", "department_id": "", "reason": "Trying"}),
                       (f"{base}/deactivate", {"reason": "Trying"})]:
        assert post_form(client, path, data, token_from="/org/").status_code == 403, path
    assert count(JobFunction) == 1
    assert (fresh_function(function.id).name, fresh_function(function.id).active) == ("Mixing operator", True)
    assert len(events("permission.denied", users[role])) == 3
