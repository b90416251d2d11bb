"""Access control: every page declares its permission, each role gets exactly what the matrix grants, denials are
audited, segregation of duties holds, and user IDs are never reused."""

from __future__ import annotations

import html
import json

import pytest
import sqlalchemy as sa

from core.auth.access import AUTHENTICATED, PUBLIC, permission_required, public
from core.auth.models import User
from core.auth.permissions import PERMISSIONS, ROLES
from core.db import db
from core.testing.pages import alerts, events, field_errors, fresh
from core.testing.plugin import ROLE_CODES, login, post_form

UNCHECKED_ENDPOINTS = {"static", "bootstrap.static"}
PUBLIC_ENDPOINTS = {"auth.login", "auth.login_totp", "api.qualification", "api.openapi"}  # the API: token only











def user_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(User))




def unprotected_views(app) -> list[str]:
    """Endpoints whose view function does not declare a permission through permission_required() or public()."""
    allowed = set(PERMISSIONS) | {AUTHENTICATED, PUBLIC}
    return sorted(
        rule.endpoint for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNCHECKED_ENDPOINTS
        and getattr(app.view_functions[rule.endpoint], "required_permission", None) not in allowed
    )


def _tiny_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Example PDF procedure")
    return bytes(pdf.output())


def _example_ids(app, users, viewer=None) -> dict[str, int]:
    """Real records for parametrised pages: a user, a document with a Markdown revision and a PDF draft, and a
    training assignment on the effective revision for each user (created once per test's database). Assignments
    are visible only to their assignee, so `assignment_id` is the viewer's own (the operator's by default)."""
    if "test_examples" not in app.extensions:
        from core.db import transaction
        from core.org import Department, JobFunction, Site
        from qms.documents.models import Document, Revision
        from training.models import TrainingAssignment

        author = users["document_author"]
        with transaction(reason="Example records for the permission sweep"):
            site = Site(code="EX", name="Example site")
            dept = Department(site=site, code="EXD", name="Example department")
            doc = Document(number="SOP-EX-001", title="Example procedure", doc_type="SOP", department=dept,
                           owner_id=author.id)
            function = JobFunction(code="EX-OPR", name="Example operator", department=dept)
            db.session.add_all([site, dept, doc, function])
            # the example person reports to the supervisor: supervisors see their direct reports' training
            users["operator"].supervisor_id = users["supervisor"].id
            db.session.flush()
            first = Revision(document_id=doc.id, major=1, minor=0, status="effective", content_format="markdown",
                             content_markdown="# Example", change_summary="First issue", reason="New",
                             author_id=author.id, content_sha256="0" * 64)
            draft = Revision(document_id=doc.id, major=2, minor=0, status="draft", content_format="pdf",
                             content_pdf=_tiny_pdf(), content_filename="example.pdf",
                             change_summary="PDF version", reason="Layout", author_id=author.id,
                             content_sha256="0" * 64)
            db.session.add_all([first, draft])
            db.session.flush()
            assignments = {u.id: TrainingAssignment(user_id=u.id, document_id=doc.id, revision_id=first.id,
                                                    source_type="revision_approval", source_id=first.id)
                           for u in users.values()}
            db.session.add_all(assignments.values())
            db.session.flush()
            from qms.change_control.models import ChangeControl

            change = ChangeControl(number="CC-2000-0001", title="Example change", description="Example",
                                   justification="Example", change_type="document", risk_level="low",
                                   risk_rationale="Example", owner_id=users["qa_approver"].id)
            db.session.add(change)
            from datetime import UTC, date, datetime

            from qms.capa.models import Capa, CapaAction
            from qms.deviations.models import Deviation

            deviation = Deviation(number="DEV-2000-0001", title="Example deviation",
                                  occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
                                  discovered_at=datetime(2000, 1, 2, tzinfo=UTC), site_id=site.id,
                                  department_id=dept.id, description="Example", owner_id=users["qa_approver"].id)
            capa = Capa(number="CAPA-2000-0001", title="Example CAPA", source_type="other",
                        source_reference="Example", problem_statement="Example", owner_id=users["qa_approver"].id)
            db.session.add_all([deviation, capa])
            db.session.flush()
            capa_action = CapaAction(capa_id=capa.id, kind="corrective", description="Example action",
                                     owner_id=users["qa_approver"].id, due_on=date(2030, 1, 1))
            db.session.add(capa_action)
            from validation.models import ScenarioResult, StepResult, ValidationRun

            run = ValidationRun(protocol="CANARY", status="completed", result="failed", scenarios=1, steps=1,
                                failed=1, executor_id=users["validation_engineer"].id)
            db.session.add(run)
            db.session.flush()
            scenario = ScenarioResult(run_id=run.id, position=1, feature_path="validation/canaries/canary.feature",
                                      feature_name="Example", name="Example scenario", tags="URS-001",
                                      outcome="failed")
            db.session.add(scenario)
            db.session.flush()
            db.session.add(StepResult(run_id=run.id, scenario_id=scenario.id, position=1, keyword="Then",
                                      text="the result is 5", expected="the result is 5", actual="the result is 4",
                                      outcome="failed", incident_id=deviation.id))
            db.session.flush()
            app.extensions["test_examples"] = {"user_id": users["operator"].id, "document_id": doc.id,
                                               "revision_id": draft.id, "job_function_id": function.id,
                                               "username": users["operator"].username, "change_id": change.id,
                                               "deviation_id": deviation.id, "capa_id": capa.id,
                                               "action_id": capa_action.id, "run_id": run.id}
            app.extensions["test_example_assignments"] = {uid: a.id for uid, a in assignments.items()}
    own = app.extensions["test_example_assignments"]
    viewer_id = (viewer or users["operator"]).id
    return {**app.extensions["test_examples"], "assignment_id": own.get(viewer_id, own[users["operator"].id])}


def get_routes(app, users, viewer=None) -> list[tuple[str, str, str]]:
    """(endpoint, path, required permission) for every GET page; parametrised pages use real records (the
    viewer's own where a record is private to its owner)."""
    example = _example_ids(app, users, viewer)
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNCHECKED_ENDPOINTS or "GET" not in rule.methods:
            continue
        if set(rule.arguments) - example.keys():
            raise AssertionError(f"no example value for the URL parameters of {rule.rule}; add one to this test")
        path = rule.build({k: v for k, v in example.items() if k in rule.arguments}, append_unknown=False)[1]
        routes.append((rule.endpoint, path, app.view_functions[rule.endpoint].required_permission))
    return sorted(routes)


# --- (a) every view declares its permission ---------------------------------------------------------------------------


def test_every_view_declares_the_permission_it_needs(app):
    assert unprotected_views(app) == []


def test_only_the_login_pages_are_public(app):
    public_endpoints = {rule.endpoint for rule in app.url_map.iter_rules()
                        if getattr(app.view_functions[rule.endpoint], "required_permission", None) == PUBLIC}
    assert public_endpoints == PUBLIC_ENDPOINTS


def test_a_new_route_without_a_permission_is_detected(app):
    @app.route("/forgotten")
    def forgotten():
        return "open to anyone"

    @app.route("/guarded")
    @permission_required("users.view")
    def guarded():
        return "checked"

    @app.route("/open")
    @public
    def deliberately_open():
        return "declared public"

    @permission_required("users.view")  # decorators in the wrong order: the route registers the unchecked view
    @app.route("/misordered")
    def misordered():
        return "not checked"

    assert unprotected_views(app) == ["forgotten", "misordered"]


def test_an_unknown_permission_code_is_refused_when_the_view_is_defined():
    with pytest.raises(ValueError, match="unknown permission"):
        permission_required("documents.destroy")


# --- (b) each role gets exactly what its permissions allow ------------------------------------------------------------


@pytest.mark.parametrize("role", ROLE_CODES)
def test_each_role_gets_exactly_the_pages_its_permissions_allow(app, users, role):
    user = users[role]
    client = app.test_client()
    assert login(client, user).status_code == 302
    checked = 0
    for _endpoint, path, needed in get_routes(app, users, user):
        if needed == PUBLIC:
            continue
        response = client.get(path)
        text = response.get_data(as_text=True) if response.mimetype.startswith("text/") else ""
        if needed == AUTHENTICATED or user.can(needed):
            assert response.status_code == 200, (role, path, response.status_code, text[:500])
        else:
            assert response.status_code == 403, (role, path, response.status_code)
            assert f"({needed})" in html.unescape(text), (role, path)
            assert PERMISSIONS[needed].label in html.unescape(text)
            denied = [json.loads(e.detail) for e in events("permission.denied", user)]
            assert {"permission": needed, "method": "GET", "path": path} in denied, (role, path)
        checked += 1
    assert checked >= 10
    expected_denials = sum(1 for _, _, needed in get_routes(app, users)
                           if needed not in (PUBLIC, AUTHENTICATED) and not user.can(needed))
    assert len(events("permission.denied", user)) == expected_denials


def test_anonymous_visitors_are_sent_to_the_login_page(app, users, client):
    for _endpoint, path, needed in get_routes(app, users):
        if needed == PUBLIC:
            continue
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    assert events("permission.denied") == []


def test_a_denied_post_is_audited_and_changes_nothing(app, users):
    client = app.test_client()
    assert login(client, users["qa_approver"]).status_code == 302
    target = users["operator"]
    response = post_form(client, f"/admin/users/{target.id}/deactivate", {"reason": "Not my job, trying anyway"},
                         token_from="/account")
    assert response.status_code == 403
    assert "(users.manage)" in response.get_data(as_text=True)
    assert fresh(target).active is True
    denied = [json.loads(e.detail) for e in events("permission.denied", users["qa_approver"])]
    assert denied == [{"permission": "users.manage", "method": "POST",
                       "path": f"/admin/users/{target.id}/deactivate"}]


# --- (c) segregation of duties ---------------------------------------------------------------------------------------


def test_the_system_administrator_role_neither_signs_nor_edits_records():
    admin = ROLES["system_admin"]
    assert not admin.signing
    assert [p for p in admin.permissions if PERMISSIONS[p].signing or PERMISSIONS[p].edits_records] == []




def user_form(username: str, full_name: str, email: str, roles: list[str], **extra) -> dict:
    return {"username": username, "full_name": full_name, "email": email, "roles": roles, "site_id": "",
            "department_id": "", "supervisor_id": "", "timezone": "", **extra}


def test_an_administrator_cannot_grant_themself_roles(admin, admin_client):
    path = f"/admin/users/{admin.id}/edit"
    response = post_form(admin_client, path, user_form("admin.one", "Ada Admin", admin.email,
                                                       ["system_admin", "auditor"],
                                                       reason="I need to export the audit log"))
    assert "Segregation of duties: nobody can change their own roles; ask another administrator." in alerts(response)
    assert response.status_code == 403
    assert fresh(admin).role_codes == {"system_admin"}
    assert events("roles.changed") == []


def test_another_administrator_can_change_roles(make_user, admin, admin_client):
    other = make_user("olaf", roles={"operator"}, full_name="Olaf Operator")
    response = post_form(admin_client, f"/admin/users/{other.id}/edit",
                         user_form("olaf", "Olaf Operator", other.email, ["operator", "supervisor"],
                                   reason="Promoted to shift lead"))
    assert response.status_code == 302
    assert fresh(other).role_codes == {"operator", "supervisor"}
    assert len(events("roles.changed", other)) == 1


def test_creating_a_user_who_is_both_administrator_and_qa_approver_is_refused(admin_client):
    before = user_count()
    response = post_form(admin_client, "/admin/users/new",
                         user_form("dual.role", "Dual Role", "dual@example.com", ["system_admin", "qa_approver"]))
    assert response.status_code == 422
    messages = " ".join(field_errors(response))
    assert "Segregation of duties" in messages
    assert "QA approver" in messages
    assert user_count() == before


@pytest.mark.parametrize("role", [r for r in ROLE_CODES if r != "system_admin"])
def test_an_administrator_cannot_also_hold_a_role_that_signs_or_edits_records(admin_client, role):
    risky = any(PERMISSIONS[p].signing or PERMISSIONS[p].edits_records for p in ROLES[role].permissions)
    before = user_count()
    response = post_form(admin_client, "/admin/users/new",
                         user_form("combo.user", "Combo User", "combo@example.com", ["system_admin", role]))
    if risky:
        assert response.status_code == 422, role
        assert "Segregation of duties" in " ".join(field_errors(response))
        assert user_count() == before
    else:
        assert response.status_code == 200, role
        assert user_count() == before + 1


def test_granting_a_signing_role_to_an_administrator_is_refused(make_user, admin_client):
    other = make_user("second.admin", roles={"system_admin"}, full_name="Second Admin")
    response = post_form(admin_client, f"/admin/users/{other.id}/edit",
                         user_form("second.admin", "Second Admin", other.email, ["system_admin", "document_author"],
                                   reason="Needs to write SOPs"))
    assert response.status_code == 422
    assert "Segregation of duties" in " ".join(field_errors(response))
    assert fresh(other).role_codes == {"system_admin"}


# --- (d) user IDs are never reused -----------------------------------------------------------------------------------


def test_a_deactivated_users_username_is_never_reused(make_user, admin_client):
    gone = make_user("gone.user", roles={"operator"}, full_name="Gone User")
    response = post_form(admin_client, f"/admin/users/{gone.id}/deactivate", {"reason": "Left the company"},
                         token_from=f"/admin/users/{gone.id}")
    assert response.status_code == 302
    before = user_count()
    response = post_form(admin_client, "/admin/users/new",
                         user_form("gone.user", "New Person", "new.person@example.com", ["operator"]))
    assert response.status_code == 422
    assert ("Username: Username 'gone.user' belonged to a deactivated account; user IDs are never reused."
            in field_errors(response))
    assert user_count() == before


def test_a_username_differing_only_in_case_is_the_same_username(make_user, admin_client):
    make_user("taken.name", roles={"operator"})
    before = user_count()
    response = post_form(admin_client, "/admin/users/new",
                         user_form("Taken.Name", "Other Person", "other@example.com", ["operator"]))
    assert response.status_code == 422
    assert "Username: Username 'taken.name' is already taken." in field_errors(response)
    assert user_count() == before


def test_a_username_cannot_be_changed_by_editing(make_user, admin_client):
    other = make_user("fixed.name", roles={"operator"}, full_name="Fixed Name")
    response = post_form(admin_client, f"/admin/users/{other.id}/edit",
                         user_form("renamed", "Fixed Name", other.email, ["operator"], reason="Rename please"))
    assert response.status_code == 422
    assert "Username: Username cannot be changed: user IDs are never reassigned." in field_errors(response)
    assert fresh(other).username == "fixed.name"
