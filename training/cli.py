"""`flask training ...`: job functions held by people (each command one audited unit of work)."""

from __future__ import annotations

from datetime import date

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from core.auth import services as auth
from core.db import db, transaction
from core.errors import AttestError
from core.org import JobFunction
from training import services
from training.models import UserJobFunction

training_cli = AppGroup("training", help="Training: job functions and assignments.")


def _lookup(username: str, code: str):
    user = auth.get_by_username(username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    function = db.session.scalar(sa.select(JobFunction).where(JobFunction.code == code))
    if function is None:
        raise click.ClickException(f"no job function with code {code!r}")
    return user, function


def _date(value: str | None, param: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("must be a date written YYYY-MM-DD", param_hint=param) from None


@training_cli.command("grant-job-function")
@click.argument("username")
@click.argument("code")
@click.option("--from", "valid_from", help="First day held (YYYY-MM-DD; default today).")
def grant(username, code, valid_from):
    """USERNAME starts holding job function CODE and is assigned the training it requires."""
    user, function = _lookup(username, code)
    try:
        with transaction():
            services.grant_job_function(user, function.id, valid_from=_date(valid_from, "--from"), actor=None)
    except AttestError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{user.username} holds {function.code}")


@training_cli.command("end-job-function")
@click.argument("username")
@click.argument("code")
@click.option("--to", "valid_to", help="First day no longer held (YYYY-MM-DD; default today).")
def end(username, code, valid_to):
    """USERNAME stops holding job function CODE; open training no longer required is cancelled."""
    user, function = _lookup(username, code)
    held = db.session.scalars(sa.select(UserJobFunction).where(
        UserJobFunction.user_id == user.id, UserJobFunction.job_function_id == function.id,
        UserJobFunction.valid_to.is_(None))).first()
    if held is None:
        raise click.ClickException(f"{user.username} does not hold {function.code}")
    try:
        with transaction():
            services.end_job_function(held, valid_to=_date(valid_to, "--to"), actor=None)
    except AttestError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{user.username} no longer holds {function.code}")
