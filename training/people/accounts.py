"""A person leaving and coming back, from the user administration (the Users page and `flask users deactivate`).

Deactivating a person is more than closing their account: their open training is cancelled in the same transaction
(training.people.services.deactivate_person, an explicit call; core knows nothing of training). So the routes live
here, at the Users page's addresses, and their buttons appear on it among core's (core.auth.admin.AccountAction).
"""

from __future__ import annotations

import click
from flask import Blueprint
from flask_login import current_user

from core.auth import admin
from core.auth.access import permission_required
from core.auth.models import User
from core.cli import run_command, user_named
from training.people import services

bp = Blueprint("people_accounts", __name__, url_prefix="/admin/users")

MANAGE = "users.manage"


@bp.route("/<int:user_id>/deactivate", methods=["POST"])
@permission_required(MANAGE)
def deactivate(user_id: int):
    return admin.reason_action(user_id, lambda u: services.deactivate_person(u, actor=current_user),
                               "{user} was deactivated; their sessions ended.")


@bp.route("/<int:user_id>/reactivate", methods=["POST"])
@permission_required(MANAGE)
def reactivate(user_id: int):
    return admin.reason_action(user_id, services.reactivate_person, "{user} was reactivated.")


def _active(user: User) -> bool:
    return user.active


def _inactive(user: User) -> bool:
    return not user.active


ACTIONS = (
    admin.AccountAction("people_accounts.deactivate", "Deactivate", "btn-outline-danger", _active, position=10),
    admin.AccountAction("people_accounts.reactivate", "Reactivate", "btn-outline-success", _inactive, position=10),
)


@click.command("deactivate")
@click.argument("username")
@click.option("--reason", required=True)
def users_deactivate(username, reason):
    """Deactivate an account (accounts are never deleted; the username is never reused)."""
    user = user_named(username)
    run_command(reason, lambda: services.deactivate_person(user, actor=None))
    click.echo(f"deactivated {user.username}")
