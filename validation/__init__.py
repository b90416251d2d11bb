"""Validation: URS, IQ/OQ/PQ protocol runner, executed runs, evidence, traceability."""

from __future__ import annotations

from core.auth.permissions import EVERYONE, Permission
from core.config import Setting

PERMISSIONS = (
    Permission("validation.execute", "Execute validation protocols", signing=True, edits_records=True),
    Permission("validation.approve", "Review and approve validation runs", signing=True),
)
ROLES = (  # code, name, description, position on the Roles page
    ("validation_engineer", "Validation engineer",
     "Executes IQ/OQ/PQ protocols; raises and investigates their test incidents (deviations).", 70),
)
GRANTS = {
    # raises and investigates the test incidents (deviations) of the protocols it executes
    "validation_engineer": EVERYONE | {"documents.view", "quality.view", "validation.execute", "quality.manage",
                                       "training.view_own", "audit.view"},
    "qa_approver": {"validation.approve"},
}
EVENTS = {"validation_run.printed": "Validation run printed"}
SETTINGS = (  # read and validated with core's (core.config), in this position on the Configuration page
    Setting("VALIDATION_DATABASE_URL", str, "",
            "PostgreSQL server URL where validation runs create (and drop) their scratch database; empty: a "
            "scratch SQLite file. Never the production database", secret=True, position=220),
)


def load_models() -> None:
    import validation.models  # noqa: F401


def init_app(app) -> None:
    from core import audit, demo, web
    from core.auth import permissions
    from validation import cli, views
    from validation import demo as validation_demo

    permissions.register_package(permissions=PERMISSIONS, position=50, roles=ROLES, grants=GRANTS)
    audit.register_events(EVENTS, position=50)

    app.register_blueprint(views.bp)
    web.register_nav(app, "Validation", "validation.overview", "audit.view", position=100)  # engineers, QA, auditors
    app.cli.add_command(cli.validation_cli)

    demo.register_people(
        app,
        logins=[demo.DemoLogin("validation", "Vera Validation", frozenset({"validation_engineer"}), "QA", "BSL",
                               position=70)],
        roles=[demo.DemoRole("validation_engineer", share=1, departments=("ENG",), position=50)])
    demo.register_loader(app, validation_demo.load, stage=60)  # protocols approved, ready to execute
