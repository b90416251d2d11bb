"""The packages wire themselves (docs/architecture.md): each init_app registers its part, create_app calls them in
dependency order, registering again changes nothing, the assembled role x permission matrix is the approved one,
and core holds no domain knowledge (no domain permission, event type, endpoint or table)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_PACKAGES = ("signatures", "training", "lms", "qms", "validation")
CONFIG = {"DATABASE_URL": "sqlite://", "SECRET_KEY": "packages-test-secret-key-0123456789abcdef", "TESTING": True}

# The approved role x permission matrix, role by role, as it stood before the packages registered their own parts
# (issue 13, part 4). A change here is a change of the validated matrix: it goes through change control.
APPROVED_MATRIX = {
    "system_admin": {"dashboard.view", "users.view", "users.manage", "roles.view", "config.view", "audit.view",
                     "org.view"},
    "qa_approver": {"dashboard.view", "documents.view", "org.view", "quality.view", "documents.review",
                    "documents.approve", "quality.manage", "quality.approve", "validation.approve", "audit.view",
                    "audit.export", "training.view_own", "training.view_team", "roles.view", "users.view"},
    "document_author": {"dashboard.view", "documents.view", "org.view", "quality.view", "documents.author",
                        "documents.review", "training.view_own"},
    "training_coordinator": {"dashboard.view", "documents.view", "org.view", "quality.view", "training.manage",
                             "training.view_team", "training.view_own", "users.view"},
    "supervisor": {"dashboard.view", "documents.view", "org.view", "quality.view", "training.view_team",
                   "training.view_own", "quality.manage", "documents.review"},
    "operator": {"dashboard.view", "documents.view", "org.view", "quality.view", "training.view_own"},
    "validation_engineer": {"dashboard.view", "documents.view", "org.view", "quality.view", "validation.execute",
                            "quality.manage", "training.view_own", "audit.view"},
    "auditor": {"dashboard.view", "documents.view", "org.view", "quality.view", "audit.view", "audit.export",
                "roles.view", "users.view", "training.view_team"},
}
APPROVED_ROLES = [  # the Roles page's columns, in order: code, name, description
    ("system_admin", "System administrator",
     "Manages accounts and configuration; holds no signing or record-editing permission."),
    ("qa_approver", "QA approver", "Approves documents, quality events and validation runs."),
    ("document_author", "Document author", "Writes and revises controlled documents."),
    ("training_coordinator", "Training coordinator", "Maintains the training matrix and assignments."),
    ("supervisor", "Supervisor", "Leads a team; follows its training and raises quality events."),
    ("operator", "Operator", "Performs GxP work; completes read-and-sign training."),
    ("validation_engineer", "Validation engineer",
     "Executes IQ/OQ/PQ protocols; raises and investigates their test incidents (deviations)."),
    ("auditor", "Auditor (read-only)", "Inspects records and audit trails; changes nothing."),
]
APPROVED_PERMISSIONS = [  # the Roles page's rows, in order: code, label, signing, edits records
    ("dashboard.view", "See the home page", False, False),
    ("users.view", "See user accounts", False, False),
    ("users.manage", "Create, change, deactivate and unlock user accounts; grant roles", False, False),
    ("roles.view", "See the role and permission matrix", False, False),
    ("config.view", "See the effective system configuration", False, False),
    ("audit.view", "See audit trails and the global audit log", False, False),
    ("audit.export", "Export the audit log", False, False),
    ("org.view", "See sites, departments and job functions", False, False),
    ("documents.view", "See controlled documents", False, False),
    ("documents.author", "Author document revisions", True, True),
    ("documents.review", "Review document revisions", True, False),
    ("documents.approve", "Approve document revisions (QA)", True, False),
    ("quality.view", "See change controls, deviations and CAPAs", False, False),
    ("quality.manage", "Raise and edit change controls, deviations and CAPAs", False, True),
    ("quality.approve", "Approve and close change controls, deviations and CAPAs (QA)", True, False),
    ("training.view_own", "See and complete own training (read and sign)", True, False),
    ("training.view_team", "See the team's training status", False, False),
    ("training.manage", "Maintain the training matrix and assign training", False, True),
    ("validation.execute", "Execute validation protocols", True, True),
    ("validation.approve", "Review and approve validation runs", True, False),
]


def _create_app():
    from app import create_app

    return create_app(dict(CONFIG))


def _snapshot(app) -> dict:
    from core.audit import EVENT_LABELS
    from core.auth.permissions import PERMISSIONS, ROLES

    return {
        "permissions": list(PERMISSIONS.items()), "roles": list(ROLES.items()), "events": list(EVENT_LABELS.items()),
        "blueprints": list(app.blueprints), "rules": sorted((r.rule, r.endpoint) for r in app.url_map.iter_rules()),
        "nav": list(app.extensions["attest_nav"]),
        "slots": {k: len(v) for k, v in app.extensions["attest_slots"].items()},
        "actions": list(app.extensions["attest_account_actions"]),
        "demo": {k: list(v) for k, v in app.extensions["attest_demo"].items()},
        "commands": sorted(app.cli.list_commands(None)),
        "user_commands": sorted(app.cli.get_command(None, "users").list_commands(None)),
    }


# --- the matrix ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(APPROVED_MATRIX))
def test_the_assembled_matrix_grants_each_role_exactly_its_approved_permissions(role):
    from core.auth.permissions import ROLES

    _create_app()
    assert set(ROLES[role].permissions) == APPROVED_MATRIX[role]


def test_the_roles_page_shows_the_approved_roles_and_permissions_in_their_order():
    from core.auth.permissions import PERMISSIONS, ROLES

    _create_app()
    assert [(r.code, r.name, r.description) for r in ROLES.values()] == APPROVED_ROLES
    assert [(p.code, p.label, p.signing, p.edits_records) for p in PERMISSIONS.values()] == APPROVED_PERMISSIONS


def test_the_audit_logs_event_types_keep_their_order():
    from core.audit import EVENT_LABELS

    _create_app()
    assert list(EVENT_LABELS) == [
        "login.success", "login.failure", "login.totp_failure", "logout", "session.expired", "account.locked",
        "account.unlocked", "password.changed", "password.reset", "totp.enrolled", "totp.reset", "totp.replay",
        "permission.denied", "csrf.refused", "action.refused", "audit.exported", "signature.failure",
        "document.printed", "training_record.printed", "validation_run.printed", "backup.created", "backup.restored",
        "user.deactivated", "user.reactivated", "roles.changed", "api_token.created", "api_token.revoked",
        "api.request", "api.refused"]


def test_a_grant_to_the_system_administrator_of_a_signing_permission_is_refused():
    from core.auth import permissions

    _create_app()
    before = permissions.ROLES["system_admin"]
    try:
        with pytest.raises(RuntimeError, match="segregation of duties"):
            permissions.grant("system_admin", {"documents.approve"})
    finally:
        permissions.ROLES["system_admin"] = before


def test_a_permission_or_role_declared_again_differently_is_refused():
    from core.auth import permissions

    _create_app()
    with pytest.raises(RuntimeError, match="declared twice"):
        permissions.register_permissions([permissions.Permission("documents.view", "Something else")], position=20)
    with pytest.raises(RuntimeError, match="declared twice"):
        permissions.register_role("operator", "Operator", "Another description", position=60)
    with pytest.raises(RuntimeError, match="unknown role"):
        permissions.grant("no_such_role", {"dashboard.view"})


def test_an_audit_event_type_declared_again_differently_is_refused():
    from core import audit

    _create_app()
    with pytest.raises(RuntimeError, match="declared twice"):
        audit.register_events({"document.printed": "Something else"}, position=30)


# --- assembly --------------------------------------------------------------------------------------------------------


def test_create_app_calls_each_package_init_app_once_in_dependency_order(monkeypatch):
    import app as application

    calls = []
    for package in application.PACKAGES:
        original = package.init_app
        monkeypatch.setattr(package, "init_app", lambda app, _o=original, _n=package.__name__: (calls.append(_n),
                                                                                                   _o(app)))
    application.create_app(dict(CONFIG))
    assert calls == ["core", "signatures", "training", "lms", "qms", "validation"]


def test_a_second_create_app_registers_nothing_twice():
    first = _snapshot(_create_app())
    second = _snapshot(_create_app())
    assert second == first
    assert len(first["rules"]) == len(set(first["rules"]))
    assert len(first["nav"]) == len({label for _, label, _, _ in first["nav"]})
    assert all(len(set(map(id, v))) == len(v) for v in first["demo"].values())


def test_the_navigation_bar_keeps_its_order():
    app = _create_app()
    assert [label for _, label, _, _ in app.extensions["attest_nav"]] == [
        "Documents", "My training", "Training matrix", "Team training", "HR import", "API tokens", "Change control",
        "Deviations", "CAPA", "Validation", "Organisation", "People & job functions"]


def test_demo_loaders_run_after_what_they_build_on():
    """Training's people hold job functions before documents are approved; the matrix and completions need the
    published training items; quality events need the trained organisation; validation comes last."""
    app = _create_app()
    order = [f"{loader.__module__}.{loader.__name__}" for _, loader in app.extensions["attest_demo"]["loaders"]]
    assert order == ["training.demo.load", "qms.documents.demo.load", "training.matrix.demo.load",
                     "qms.quality_demo.load", "validation.demo.load"]


def test_the_demo_logins_are_the_readme_table():
    app = _create_app()
    logins = [(d.username, sorted(d.roles)) for d in app.extensions["attest_demo"]["logins"]]
    assert logins == [("admin", ["system_admin"]), ("qa.approver", ["qa_approver"]), ("author", ["document_author"]),
                      ("coordinator", ["training_coordinator"]), ("supervisor", ["supervisor"]),
                      ("operator", ["operator"]), ("validation", ["validation_engineer"]), ("auditor", ["auditor"])]
    readme = (ROOT / "README.md").read_text()
    assert all(f"| `{username}` |" in readme for username, _ in logins)


# --- core holds no domain knowledge ------------------------------------------------------------------------------


def _core_files(*suffixes: str):
    for path in sorted((ROOT / "core").rglob("*")):
        if path.suffix in suffixes and "__pycache__" not in path.parts:
            yield path


def _domain_blueprints() -> set[str]:
    app = _create_app()
    return {name for name, bp in app.blueprints.items() if bp.import_name.split(".")[0] in DOMAIN_PACKAGES}


def test_core_templates_link_to_no_domain_page():
    domain = _domain_blueprints()
    assert {"documents", "people", "job_functions", "api", "validation"} <= domain
    offenders = []
    for path in _core_files(".html"):
        for endpoint in re.findall(r"""url_for\(\s*['"]([\w.]+)['"]""", path.read_text()):
            if endpoint.split(".")[0] in domain:
                offenders.append(f"{path.relative_to(ROOT)}: {endpoint}")
    assert offenders == []


def test_core_names_no_domain_permission_event_type_or_table():
    from core.audit import CORE_EVENTS, EVENT_LABELS
    from core.auth.permissions import CORE_PERMISSIONS, PERMISSIONS

    _create_app()
    domain_permissions = set(PERMISSIONS) - {p.code for p in CORE_PERMISSIONS}
    domain_events = set(EVENT_LABELS) - set(CORE_EVENTS)
    assert domain_permissions and domain_events
    domain_words = domain_permissions | domain_events | {"training_", "qms_", "lms_", "validation_", "signature_"}
    offenders = []
    for path in _core_files(".py", ".html"):
        if "testing" in path.parts:
            continue
        text = path.read_text()
        for word in sorted(domain_words):
            if re.search(rf"""['"]{re.escape(word)}""", text):
                offenders.append(f"{path.relative_to(ROOT)}: {word}")
    assert offenders == []


def test_core_defines_no_domain_role():
    from core.auth.permissions import CORE_ROLES, ROLES

    _create_app()
    assert [code for code, *_ in CORE_ROLES] == ["system_admin", "auditor"]
    domain_roles = set(ROLES) - {"system_admin", "auditor"}
    offenders = [f"{path.relative_to(ROOT)}: {role}" for path in _core_files(".py", ".html")
                 if "testing" not in path.parts for role in sorted(domain_roles)
                 if re.search(rf"""['"]{role}['"]""", path.read_text())]
    assert offenders == []
