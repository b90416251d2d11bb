"""Command-line interface of the quality system: `flask qms release-due`, `reviews-due` (and `retraining-due`, the old
name of `flask training retraining-due`).

`release-due` is what the scheduler runs (daily, from any number of servers): one transaction,
recorded as a system action with the OS user that ran it.
"""

from __future__ import annotations

from datetime import date, datetime

import click
from flask.cli import AppGroup

from core.clock import now_utc
from core.db import transaction
from core.errors import AttestError
from qms.documents import release, services

qms_cli = AppGroup("qms", help="Document control.")

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _day(value: datetime | None) -> date:
    return value.date() if value is not None else now_utc().date()


@qms_cli.command("release-due")
@click.option("--date", "on", type=_DATE, default=None,
              help="Release what is due on this day (YYYY-MM-DD, default today in UTC).")
def release_due(on: datetime | None) -> None:
    """Make approved revisions whose effective date has come effective, superseding the revision in force."""
    today = _day(on)
    lines = []
    try:
        with transaction():
            for revision in services.release_due(today):
                previous = services.predecessor(revision)
                supersedes = f", supersedes {previous.label}" if previous is not None else ""
                lines.append(f"{revision.document.number} revision {revision.label} effective from "
                             f"{revision.effective_on}{supersedes}")
    except AttestError as exc:
        raise click.ClickException(exc.message) from None
    for line in lines:
        click.echo(line)
    for revision in release.held_releases(today):
        waiting = len(release.untrained_assignees(revision))
        click.echo(f"{revision.document.number} revision {revision.label} held: released when trained, "
                   f"{waiting} {'people have' if waiting != 1 else 'person has'} not trained yet")
    click.echo(f"released {len(lines)} revision{'s' if len(lines) != 1 else ''} due on or before {today}")


@qms_cli.command("retraining-due")
@click.option("--date", "on", type=_DATE, default=None,
              help="Assign what falls due by this day (YYYY-MM-DD, default today in UTC).")
def retraining_due(on: datetime | None) -> None:
    """Old name of `flask training retraining-due`, kept for existing schedules; it says so and runs it."""
    from training.cli import run_retraining_due

    click.echo("note: `flask qms retraining-due` is now `flask training retraining-due`; update the schedule",
               err=True)
    run_retraining_due(on)


@qms_cli.command("reviews-due")
@click.option("--date", "on", type=_DATE, default=None,
              help="List reviews due on or before this day (YYYY-MM-DD, default today in UTC).")
def reviews_due(on: datetime | None) -> None:
    """List effective documents whose periodic review is due or overdue."""
    today = _day(on)
    due = services.reviews_due(today)
    for revision in due:
        late = (today - revision.review_due_on).days
        when = f"{late} day{'s' if late != 1 else ''} overdue" if late else "due today"
        click.echo(f"{revision.review_due_on}  {revision.document.number} revision {revision.label}  "
                   f"{revision.document.title}  ({when})")
    click.echo(f"{len(due)} periodic review{'s' if len(due) != 1 else ''} due on or before {today}")
