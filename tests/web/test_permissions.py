"""Access control: every page declares its permission, denials are audited, segregation of duties holds, and user
IDs are never reused. Who gets which route, role by role, is the authorisation matrix's sweep
(tests/web/test_authorization_matrix.py)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from core.auth.access import AUTHENTICATED, PUBLIC, check_routes, permission_required, public
from core.auth.models import User
from core.auth.permissions import PERMISSIONS, ROLES
from core.db import db
from core.testing.pages import alerts, events, field_errors, fresh
from testkit.plugin import ROLE_CODES, login, post_form
from tests.web.route_examples import UNCHECKED_ENDPOINTS
from tests.web.route_examples import _example_ids as _example_ids  # re-exported: tests/web/test_fuzz_forms.py

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


def test_an_unknown_permission_code_is_refused_when_the_application_is_assembled(app):
    """Packages register their permissions in init_app, after their views may have been imported: the check runs
    once everything is registered (create_app ends with it), so a typo still stops the application at start-up."""
    @app.route("/destroy")
    @permission_required("documents.destroy")
    def destroy():
        return "never"

    with pytest.raises(RuntimeError, match="route destroy needs the unknown permission 'documents.destroy'"):
        check_routes(app)


# --- (b) a refused POST ---------------------------------------------------------------------------------------------


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
    assert [json.loads(e.detail)["message"] for e in events("action.refused", admin)] == [
        "Segregation of duties: nobody can change their own roles; ask another administrator."]


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
