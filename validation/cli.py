"""`flask validation ...`: execute a protocol, list the protocol files and step code and their approval, export the
trace matrix."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from core import audit
from core.auth.models import User
from core.db import db, transaction
from core.errors import AttestError
from validation import services
from validation.models import PASSED, PROTOCOLS

validation_cli = AppGroup("validation", help="Validation protocols (IQ/OQ/PQ): execute, approve, trace.")


def _user(username: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"--executor: there is no user {username!r}.")
    return user


@validation_cli.command("run")
@click.argument("protocol", type=click.Choice(list(PROTOCOLS), case_sensitive=False))
@click.option("--executor", required=True, help="Username of the validation engineer executing the protocol.")
def run_command(protocol: str, executor: str) -> None:
    """Execute PROTOCOL (IQ, OQ, PQ or CANARY) against a scratch database and record every step.

    The last line reads `protocol=.. run=.. scenarios=.. steps=.. passed=.. failed=..`; the exit code is 1 when a step
    failed or the run could not complete."""
    person = _user(executor)
    try:
        with audit.acting_as(person), transaction():
            run = services.create_run(protocol, executor=person)
        run = services.execute(run.id, echo=click.echo)
    except AttestError as exc:
        raise click.ClickException(str(exc)) from None
    if run.error:
        click.echo(f"runner error: {run.error}", err=True)
    if run.result != PASSED:
        sys.exit(1)


@validation_cli.command("execute", hidden=True)
@click.argument("run_id", type=int)
def execute_command(run_id: int) -> None:
    """Execute a run queued from the web page (started in the background by the server)."""
    try:
        services.execute(run_id, echo=click.echo)
    except AttestError as exc:
        raise click.ClickException(str(exc)) from None


@validation_cli.command("abandon")
@click.argument("run_id", type=int)
@click.option("--reason", required=True, help="Why the run is abandoned (audited).")
def abandon_command(run_id: int, reason: str) -> None:
    """End a queued or running run whose process is gone (e.g. the server restarted): it becomes a runner error."""
    from validation.models import ValidationRun

    try:
        with transaction():
            run = db.session.get(ValidationRun, run_id)
            if run is None:
                raise click.ClickException(f"There is no validation run {run_id}.")
            services.abandon(run, actor=None, reason=reason)
    except AttestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"run {run_id} abandoned: {reason}")


@validation_cli.command("protocols")
def protocols_command() -> None:
    """List the feature files and the step code of every protocol with their approval state."""
    for state in services.protocol_files():
        click.echo(f"{state.protocol:7} {state.path:60} {state.sha256[:12]}  {state.state_label}")


@validation_cli.command("trace")
@click.option("--csv", "as_csv", is_flag=True, help="Write the matrix as CSV to standard output.")
def trace_command(as_csv: bool) -> None:
    """The traceability matrix: requirement -> scenarios -> latest executed result."""
    rows = services.trace_matrix()
    if as_csv:
        services.write_trace_csv(rows, sys.stdout)
        return
    for row in rows:
        flag = f"  <- {row.flag}" if row.flag else ""
        click.echo(f"{row.requirement['id']}  {row.status:13} {len(row.scenarios)} scenario(s)  "
                   f"{row.requirement['title']}{flag}")
