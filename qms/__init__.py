"""Quality management: document control, change control, CAPA and deviations."""

from __future__ import annotations

import re

from core.auth.permissions import EVERYONE, Permission
from core.config import Setting

DOCUMENT_PERMISSIONS = (
    Permission("documents.view", "See controlled documents"),
    Permission("documents.author", "Author document revisions", signing=True, edits_records=True),
    Permission("documents.review", "Review document revisions", signing=True),
    Permission("documents.approve", "Approve document revisions (QA)", signing=True),
)
QUALITY_PERMISSIONS = (
    Permission("quality.view", "See change controls, deviations and CAPAs"),
    Permission("quality.manage", "Raise and edit change controls, deviations and CAPAs", edits_records=True),
    Permission("quality.approve", "Approve and close change controls, deviations and CAPAs (QA)", signing=True),
)
ROLES = (  # code, name, description, position on the Roles page
    ("qa_approver", "QA approver", "Approves documents, quality events and validation runs.", 20),
    ("document_author", "Document author", "Writes and revises controlled documents.", 30),
)
# everyone doing or inspecting GxP work reads the controlled documents and the quality records
READ = frozenset({"documents.view", "quality.view"})
GRANTS = {
    "qa_approver": EVERYONE | READ | {"documents.review", "documents.approve", "quality.manage", "quality.approve",
                                     "audit.view", "audit.export", "training.view_own", "training.view_team",
                                     "roles.view", "users.view"},
    "document_author": EVERYONE | READ | {"documents.author", "documents.review", "training.view_own"},
    "training_coordinator": READ,
    "supervisor": READ | {"quality.manage", "documents.review"},
    "operator": READ,
    "auditor": READ,
}
EVENTS = {"document.printed": "Controlled copy printed"}


def _regular_expression(value: str) -> str | None:
    try:
        re.compile(value)
    except (re.error, TypeError) as exc:
        return f"must be a valid regular expression, got {value!r} ({exc})"
    return None


SETTINGS = (  # read and validated with core's (core.config), in these positions on the Configuration page
    Setting("DOCUMENT_NUMBER_PATTERN", str, r"^[A-Z]{2,5}-[A-Z]{2,5}-\d{3,4}$",
            "Regular expression a controlled document number must match (e.g. SOP-QA-001)",
            check=_regular_expression, position=180),
    Setting("MAX_UPLOAD_MB", int, 20, "Largest PDF accepted as document content, megabytes", 1, 200, position=200,
            upload_mb=True),
)


def load_models() -> None:
    import qms.capa.models  # noqa: F401
    import qms.change_control.models  # noqa: F401
    import qms.deviations.models  # noqa: F401
    import qms.documents.models  # noqa: F401
    import qms.numbering  # noqa: F401


def init_app(app) -> None:
    from core import audit, demo, web
    from core.auth import permissions
    from qms import cli, quality_demo
    from qms.capa import views as capa_views
    from qms.change_control import views as change_views
    from qms.deviations import views as deviation_views
    from qms.documents import demo as document_demo
    from qms.documents import views as document_views

    permissions.register_permissions(DOCUMENT_PERMISSIONS, position=20)
    permissions.register_package(permissions=QUALITY_PERMISSIONS, position=30, roles=ROLES, grants=GRANTS)
    audit.register_events(EVENTS, position=30)

    for blueprint in (document_views.bp, change_views.bp, deviation_views.bp, capa_views.bp):
        app.register_blueprint(blueprint)
    web.register_nav(app, "Documents", "documents.register", "documents.view", position=10)
    web.register_nav(app, "Change control", "change_control.register", "quality.view", position=70)
    web.register_nav(app, "Deviations", "deviations.register", "quality.view", position=80)
    web.register_nav(app, "CAPA", "capa.register", "quality.view", position=90)
    app.cli.add_command(cli.qms_cli)

    demo.register_people(
        app,
        logins=[demo.DemoLogin("qa.approver", "Quinn Q. Approver", frozenset({"qa_approver"}), "QA", "BSL",
                               position=20),
                demo.DemoLogin("author", "Alice Author", frozenset({"document_author"}), "QA", "BSL", position=30)],
        roles=[demo.DemoRole("document_author", share=1, departments=("QA",), position=30),
               demo.DemoRole("qa_approver", share=1, departments=("QA",), position=60)])
    demo.register_loader(app, document_demo.load, stage=30)  # documents approved: their training items published
    demo.register_loader(app, quality_demo.load, stage=50)  # change controls, deviations, CAPAs on the trained staff
