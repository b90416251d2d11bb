"""Demo training matrix and completions, loaded after the demo documents by `flask demo load` (idempotent):

- the training matrix made realistic: every active job function requires documents; some requirements retrain on
  major revisions only, some every 12 or 24 months, some give new people fewer days;
- completions in varied states: about half of the open training on items in effect (at most 800) is signed "Read and
  understood" (demo signatures, auth method `demo-data`), the rest stays open;
- some overdue training: refresher assignments made by the demo coordinator with due dates already past.

Like the other demo loaders, it writes through the services, attributed to the command line.
"""

from __future__ import annotations

import random
from datetime import timedelta

import click
import sqlalchemy as sa

from core.auth.models import User, UserRole
from core.clock import now_utc
from core.db import db, default_reason, transaction
from core.org import JobFunction
from signatures.services import SignerProof
from training import engine
from training.matrix import services as matrix
from training.models import (
    OPEN,
    RETRAIN_MAJOR,
    SOURCE_MANUAL,
    TARGET_JOB_FUNCTION,
    TrainingAssignment,
    TrainingItem,
    TrainingRequirement,
    TrainingSubject,
)
from training.read_and_sign import services as rs

IN_EFFECT = sa.and_(TrainingItem.effective_at.is_not(None), TrainingItem.superseded_at.is_(None),
                    TrainingItem.retired_at.is_(None))

MARK = "Demo: refresher training"
MAX_COMPLETIONS = 800  # enough for varied records; each is a real signature and keeps `make run` quick


def _coordinator() -> User | None:
    return db.session.scalar(sa.select(User).join(UserRole).where(
        UserRole.role == "training_coordinator", User.active.is_(True)).order_by(User.id).limit(1))


def _matrix(rng: random.Random, coordinator: User) -> int:
    """Every active job function requires at least one subject in effect; settings vary. Returns cells added."""
    effective = list(db.session.scalars(sa.select(TrainingSubject).join(
        TrainingItem, TrainingItem.subject_id == TrainingSubject.id).where(IN_EFFECT).order_by(TrainingSubject.key)))
    if not effective:
        return 0
    default_reason("Demo training matrix")
    added = 0
    required = set(db.session.scalars(sa.select(TrainingRequirement.target_id).where(
        TrainingRequirement.target_type == TARGET_JOB_FUNCTION)))
    for function in db.session.scalars(sa.select(JobFunction).where(JobFunction.active.is_(True))
                                       .order_by(JobFunction.code)):
        if function.id in required:
            continue
        for subject in rng.sample(effective, k=min(3, len(effective))):
            matrix.set_requirement(subject, function.id, actor=coordinator,
                                   retrain=rng.choice(["every", "every", RETRAIN_MAJOR]),
                                   recurrence_months=rng.choice([None, None, 12, 24]),
                                   days_allowed=rng.choice([None, 7, 30]))
            added += 1
    for n, row in enumerate(db.session.scalars(sa.select(TrainingRequirement).order_by(TrainingRequirement.id))):
        if n % 5 == 1:
            row.retrain = RETRAIN_MAJOR
        elif n % 7 == 2:
            row.recurrence_months = row.recurrence_months or 12
        elif n % 11 == 3:
            row.days_allowed = 30 if row.days_allowed is None else row.days_allowed
    db.session.flush()
    return added


def _complete(rng: random.Random) -> int:
    """Sign about half of the open training on items in effect (at most 800); the demo operator keeps some."""
    rows = db.session.execute(
        sa.select(TrainingAssignment.id, User.id, User.username)
        .join(TrainingItem, TrainingItem.id == TrainingAssignment.item_id)
        .join(User, User.id == TrainingAssignment.user_id)
        .where(TrainingAssignment.status == OPEN, IN_EFFECT)
        .order_by(TrainingAssignment.id)).all()
    done = 0
    operator_kept = 0
    for assignment_id, user_id, username in rows:
        if username == "operator" and operator_kept < 4:
            operator_kept += 1
            continue
        if rng.random() >= 0.5 or done >= MAX_COMPLETIONS:
            continue
        assignment = db.session.get(TrainingAssignment, assignment_id)
        user = db.session.get(User, user_id)
        if not user.can("training.view_own"):
            continue  # e.g. an auditor holding a job function: no My training page, nothing they could sign
        rs.mark_opened(assignment, user)
        rs.complete(assignment, user=user, proof=SignerProof(user.id, "demo-data", now_utc()), expected_version=None)
        done += 1
    return done


def _overdue(rng: random.Random, coordinator: User) -> int:
    """Refresher training already past its due date for about 30 people (and the demo operator)."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment)
                         .where(TrainingAssignment.assigned_reason.like(f"{MARK}%"))):
        return 0
    effective = list(db.session.execute(sa.select(TrainingItem.id, TrainingItem.subject_id).where(
        IN_EFFECT).order_by(TrainingItem.id)).all())
    people = list(db.session.scalars(sa.select(User.id).join(UserRole).where(
        UserRole.role == "operator", User.active.is_(True)).order_by(User.id)))
    if not effective or not people:
        return 0
    chosen = rng.sample(people, k=min(30, len(people)))
    demo_operator = db.session.scalar(sa.select(User.id).where(User.username == "operator"))
    if demo_operator is not None and demo_operator not in chosen:
        chosen.append(demo_operator)
    today = now_utc().date()
    default_reason(MARK)
    rows = []
    for uid in chosen:
        item_id, subject_id = rng.choice(effective)
        cycles = engine.latest_cycles([uid], item_id)
        if uid in cycles and cycles[uid][1] == OPEN:
            continue
        rows.append({"user_id": uid, "subject_id": subject_id, "item_id": item_id,
                     "cycle": cycles[uid][0] + 1 if uid in cycles else 0, "source_type": SOURCE_MANUAL,
                     "source_id": coordinator.id, "due_on": today - timedelta(days=rng.randint(2, 40)),
                     "assigned_reason": f"{MARK} after the annual GMP audit"})
    return engine.create_assignments(rows)


def load(**_options) -> None:
    rng = random.Random(1789)
    # three units of work, as three people would do it: a record written in bulk (the assignments a new requirement
    # creates) is not changed again by the ORM in the same transaction
    with transaction():
        coordinator = _coordinator()
        if coordinator is None:
            click.echo("demo training skipped: no training coordinator")
            return
        coordinator_id = coordinator.id
        added = _matrix(rng, coordinator)
    with transaction():
        completed = _complete(rng)
    with transaction():
        overdue = _overdue(rng, db.session.get(User, coordinator_id))
    click.echo(f"demo training ready: {added} matrix requirements added, {completed} trainings signed, "
               f"{overdue} overdue refreshers")
