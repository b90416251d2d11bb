"""Training management: training items and the matrix, the assignment engine, read-and-sign, qualification, people
and their job functions, the HR import and the qualification API."""

from __future__ import annotations

from core.auth.permissions import EVERYONE, Permission
from core.config import Setting

PERMISSIONS = (
    Permission("training.view_own", "See and complete own training (read and sign)", signing=True),
    Permission("training.view_team", "See the team's training status"),
    Permission("training.manage", "Maintain the training matrix and assign training", edits_records=True),
)
ROLES = (  # code, name, description, position on the Roles page
    ("training_coordinator", "Training coordinator", "Maintains the training matrix and assignments.", 40),
    ("supervisor", "Supervisor", "Leads a team; follows its training and raises quality events.", 50),
    ("operator", "Operator", "Performs GxP work; completes read-and-sign training.", 60),
)
GRANTS = {
    "training_coordinator": EVERYONE | {"training.manage", "training.view_team", "training.view_own", "users.view"},
    "supervisor": EVERYONE | {"training.view_team", "training.view_own"},
    "operator": EVERYONE | {"training.view_own"},
    "auditor": {"training.view_team"},
}
EVENTS = {"training_record.printed": "Training record printed"}
SETTINGS = (  # read and validated with core's (core.config), in this position on the Configuration page
    Setting("TRAINING_SUPERSEDED_POLICY", str, "supersede",
            "Open training on a revision that is superseded: supersede (closed, replaced by the new revision's) "
            "or keep", choices=("supersede", "keep"), position=190),
)


def load_models() -> None:
    import training.models  # noqa: F401


def init_app(app) -> None:
    from core import audit, demo, web
    from core.auth import admin, permissions
    from core.cli import users_cli
    from training import api, cli, slots
    from training import demo as training_demo
    from training.hr_import import views as import_views
    from training.job_functions import views as job_function_views
    from training.matrix import demo as matrix_demo
    from training.matrix import views as matrix_views
    from training.people import accounts
    from training.people import views as people_views
    from training.qualification import views as qualification_views
    from training.read_and_sign import views as read_and_sign

    permissions.register_package(permissions=PERMISSIONS, position=40, roles=ROLES, grants=GRANTS)
    audit.register_events(EVENTS, position=40)

    for blueprint in (read_and_sign.bp, matrix_views.bp, qualification_views.bp, import_views.bp, api.bp,
                      people_views.bp, job_function_views.bp, accounts.bp):
        app.register_blueprint(blueprint)
    web.register_nav(app, "My training", "read_and_sign.index", "training.view_own", position=20)
    web.register_nav(app, "Training matrix", "training_matrix.matrix", "training.manage", position=30)
    web.register_nav(app, "Team training", "qualification.team", "training.view_team", position=40)
    web.register_nav(app, "HR import", "training_import.index", "training.manage", position=50)
    web.register_nav(app, "People & job functions", "people.index", "training.manage", position=120)
    web.register_slot(app, "org.index.actions", job_function_views.org_actions)
    web.register_slot(app, "org.index.sections", job_function_views.org_section)
    web.register_slot(app, "users.show.details", slots.account_details)
    web.register_slot(app, "api_tokens.about", slots.token_about)
    web.register_slot(app, "api_tokens.example", slots.token_example)
    for action in accounts.ACTIONS:
        admin.register_account_action(app, action)

    app.cli.add_command(cli.training_cli)
    users_cli.add_command(accounts.users_deactivate)

    demo.register_people(
        app,
        logins=[demo.DemoLogin("coordinator", "Chris Coordinator", frozenset({"training_coordinator"}), "QA", "BSL",
                               position=40),
                demo.DemoLogin("supervisor", "Sara Supervisor", frozenset({"supervisor"}), "PRD", "BSL", position=50),
                demo.DemoLogin("operator", "Oscar Operator", frozenset({"operator"}), "PRD", "BSL", position=60)],
        roles=[demo.DemoRole("operator", share=12, departments=("PRD",), position=10),
               demo.DemoRole("supervisor", share=2, departments=("PRD", "QC"), position=20, leads_team=True),
               demo.DemoRole("training_coordinator", share=1, departments=("QA",), position=40)])
    demo.register_loader(app, training_demo.load, stage=20)  # people hold job functions before items are published
    demo.register_loader(app, matrix_demo.load, stage=40)  # the matrix and completions, on the published items
