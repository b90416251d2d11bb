"""`flask training ...`: job functions held by people, the HR import and the daily training jobs (each command one
audited unit of work).

`retraining-due` and `reconcile-due` are what the scheduler runs daily (from any number of servers); both are
idempotent."""

from __future__ import annotations

from datetime import date, datetime

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from core.auth import services as auth
from core.db import db, transaction
from core.errors import AttestError
from core.org import JobFunction
from training.models import UserJobFunction
from training.people import services

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


@training_cli.command("import-users")
@click.argument("file", type=click.File("rb"))
@click.option("--apply", "apply_", is_flag=True, help="Apply the import (default: a dry run that changes nothing).")
@click.option("--as", "as_user", metavar="USERNAME",
              help="The training coordinator the import is recorded under (default: the system, with the OS user).")
@click.option("--reason", help="Reason for change recorded in the audit trail (required with --apply).")
def import_users(file, apply_, as_user, reason):
    """Import people from the HR system's CSV FILE: accounts, organisation, supervisor and job functions.

    Columns: username,name,email,site,department,job_functions,supervisor,active. A dry run by default: it lists the
    accounts to create, update and deactivate, and every error by row and column. With --apply the whole file is
    imported in one transaction, or nothing is when it has any error. Exits non-zero when the file has errors."""
    import contextlib
    import sys

    from core import audit
    from training.hr_import import services as hris

    if apply_ and not (reason or "").strip():
        raise click.UsageError("--reason is required with --apply (it is recorded in the audit trail)")
    actor = None
    if as_user:
        actor = auth.get_by_username(as_user)
        if actor is None or not actor.active:
            raise click.ClickException(f"no active user named {as_user!r}")
    data = file.read(hris.MAX_BYTES + 1)
    result = hris.plan(data, actor=actor)
    if apply_ and not result.errors:
        bar = click.progressbar(length=result.changes, label="Importing people", file=sys.stderr)
        try:
            with audit.acting_as(actor) if actor else contextlib.nullcontext(), bar, transaction(reason=reason):
                result = hris.apply(data, actor=actor, progress=bar.update)
        except AttestError as exc:
            raise click.ClickException(exc.message) from None
    for line in result.lines():
        click.echo(line)
    if result.errors:
        click.echo("nothing was imported: correct the errors and run it again" if apply_ else
                   "the file has errors: nothing can be imported until they are corrected")
    elif not apply_:
        click.echo("dry run: nothing was changed (add --apply --reason TEXT to import)")
    click.echo(result.summary())
    if result.errors:
        raise SystemExit(1)


@training_cli.command("reconcile-due")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366),
              help="Look back this many days for job functions and requirements that started or ended.")
def reconcile_due(days: int) -> None:
    """Assign and cancel training for job functions granted or ended, and training requirements starting or ending,
    on a date that has now come. Run daily."""
    from training.matrix import services as matrix

    try:
        with transaction():
            people, created, cancelled = services.reconcile_due(days=days)
            requirements, assigned, ended = matrix.reconcile_dated_requirements(days=days)
    except AttestError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"reconciled {people} people: {created} assignments created, {cancelled} cancelled")
    click.echo(f"applied {requirements} dated requirement{'s' if requirements != 1 else ''}: {assigned} assignments "
               f"created, {ended} cancelled")


def run_retraining_due(on: datetime | None) -> None:
    """Assign periodic retraining due by `on` (default today, UTC) in one unit of work, and say how much."""
    from core.clock import now_utc
    from training.matrix import assignments

    today = on.date() if on is not None else now_utc().date()
    try:
        with transaction():
            created = assignments.retraining_due(today)
    except AttestError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"assigned {created} periodic retraining{'s' if created != 1 else ''} due by {today}")


@training_cli.command("retraining-due")
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Assign what falls due by this day (YYYY-MM-DD, default today in UTC).")
def retraining_due(on: datetime | None) -> None:
    """Assign periodic retraining (training matrix requirements with a retraining interval). Run daily."""
    run_retraining_due(on)
