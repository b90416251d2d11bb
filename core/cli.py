"""Command-line interface: `flask users ...`, `flask audit verify`, `flask demo load`, `flask backup ...`.
(`flask users deactivate` is training's: a person leaving closes their open training too.)

Each command is one unit of work (core.db.transaction) and is recorded as a system action with the OS user that
ran it.
"""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from core import audit
from core.auth import services
from core.auth.models import User
from core.auth.permissions import ROLES
from core.db import db, transaction
from core.errors import AttestError
from core.ops import backup

users_cli = AppGroup("users", help="Manage user accounts.")
audit_cli = AppGroup("audit", help="Audit trail tools.")
demo_cli = AppGroup("demo", help="Demonstration data.")


def user_named(username: str) -> User:
    user = services.get_by_username(username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    return user


def _roles(value: str) -> set[str]:
    roles = {r.strip() for r in (value or "").split(",") if r.strip()}
    unknown = roles - ROLES.keys()
    if unknown:
        raise click.BadParameter(f"unknown role(s) {', '.join(sorted(unknown))}; known: {', '.join(ROLES)}",
                                 param_hint="--roles")
    return roles


class _RolesOption(click.Option):
    """--roles, whose help lists the roles the packages registered (known once the application is assembled)."""

    def get_help_record(self, ctx):
        self.help = f"Comma-separated role codes: {', '.join(ROLES)}."
        return super().get_help_record(ctx)


def run_command(reason: str | None, action):
    """`action()` in one unit of work with the reason for change; a refusal is the command's error message."""
    try:
        with transaction(reason=reason):
            return action()
    except AttestError as exc:
        raise click.ClickException(exc.message) from None


@users_cli.command("create")
@click.argument("username")
@click.option("--full-name", required=True, help="Full printed name, as it will appear on signatures.")
@click.option("--email", required=True)
@click.option("--roles", default="", cls=_RolesOption)
@click.option("--password", default=None, help="Initial password (must change at first login). Omit to generate.")
def users_create(username, full_name, email, roles, password):
    """Create an account. The user must change the password at first login."""
    user, temporary = run_command(None, lambda: services.create_user(
        username=username, full_name=full_name, email=email, roles=_roles(roles), password=password))
    click.echo(f"created user {user.username} (id {user.id}) with roles {', '.join(sorted(user.role_codes)) or '-'}")
    if temporary:
        click.echo(f"temporary password (shown once; must be changed at first login): {temporary}")


@users_cli.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deactivated accounts.")
def users_list(show_all):
    """List accounts with roles and status."""
    stmt = sa.select(User).order_by(User.username)
    if not show_all:
        stmt = stmt.where(User.active.is_(True))
    for user in db.session.scalars(stmt):
        flags = []
        if not user.active:
            flags.append("deactivated")
        if user.security.locked:
            flags.append("locked")
        if user.security.totp_enrolled:
            flags.append("totp")
        click.echo(f"{user.username:24} {user.full_name:32} {','.join(sorted(user.role_codes)) or '-':40} "
                   f"{' '.join(flags)}")


@users_cli.command("unlock")
@click.argument("username")
@click.option("--reason", required=True, help="Why the account is unlocked (recorded in the audit trail).")
def users_unlock(username, reason):
    """Unlock an account locked after failed attempts."""
    user = user_named(username)
    run_command(reason, lambda: services.unlock(user, actor=None))
    click.echo(f"unlocked {user.username}")


@users_cli.command("reset-totp")
@click.argument("username")
@click.option("--reason", required=True, help="Why the second factor is revoked (recorded in the audit trail).")
def users_reset_totp(username, reason):
    """Revoke a user's authenticator; they enrol a new one at next login."""
    user = user_named(username)
    run_command(reason, lambda: services.admin_reset_totp(user, actor=None))
    click.echo(f"second factor of {user.username} revoked")


@users_cli.command("set-roles")
@click.argument("username")
@click.argument("roles")
@click.option("--reason", required=True, help="Why the roles change (recorded in the audit trail).")
def users_set_roles(username, roles, reason):
    """Replace a user's roles with ROLES (comma-separated codes; '' for none)."""
    user = user_named(username)
    wanted = _roles(roles)
    run_command(reason, lambda: services.set_roles(user, wanted, actor=None))
    click.echo(f"{user.username}: roles now {', '.join(sorted(user.role_codes)) or '-'}")


@users_cli.command("reset-password")
@click.argument("username")
@click.option("--reason", required=True)
def users_reset_password(username, reason):
    """Give a user a temporary password that must be changed at next login."""
    user = user_named(username)
    temporary = run_command(reason, lambda: services.admin_reset_password(user, actor=None))
    click.echo(f"temporary password for {user.username} (shown once): {temporary}")


@audit_cli.command("verify")
def audit_verify():
    """Recompute the audit hash chain and compare every record with its last audited version."""
    result = audit.verify()
    click.echo(f"checked {result.transactions} transactions, {result.version_rows} version rows, "
               f"{result.records} records")
    if result.chain_error:
        click.echo(f"FAILED: {result.chain_error}", err=True)
    for problem in result.record_problems:
        click.echo(f"FAILED: {problem}", err=True)
    if not result.ok:
        sys.exit(1)
    click.echo("audit trail intact")


@demo_cli.command("load")
@click.option("--users", "n_users", default=300, show_default=True, help="Number of demo users.")
@click.option("--documents", "n_documents", default=150, show_default=True, help="Number of demo documents.")
@click.option("--only-organisation", is_flag=True, help="Load the organisation and users only.")
def demo_load(n_users, n_documents, only_organisation):
    """Load a realistic demo organisation and records (idempotent)."""
    from core import demo

    if only_organisation:
        demo.load(n_users=n_users)
    else:
        demo.load_all(n_users=n_users, documents=n_documents)


def register(app) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(backup.backup_cli)
