"""Subjects and training items: what the packages above training publish into it, by explicit calls in their own
unit of work.

qms publishes a document as a subject when it is created and each approved revision as an item
(`qms.documents.publish`); lms will publish course versions the same way. The owner tells training what happened to
its version (took effect, superseded, retired) in the same transaction as its own change; training never reads the
owner's tables. Every function flushes and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa
from flask import current_app

from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.errors import ValidationError
from training import engine
from training.models import (
    METHOD_READ_AND_SIGN,
    METHODS,
    OPEN,
    TrainingAssignment,
    TrainingItem,
    TrainingSubject,
)

# --- subjects --------------------------------------------------------------------------------------------------------


def subject(kind: str, key: str) -> TrainingSubject | None:
    return db.session.scalar(sa.select(TrainingSubject).where(TrainingSubject.kind == kind,
                                                              TrainingSubject.key == key))


def find_subject(key: str) -> TrainingSubject | None:
    """The subject with this key, whatever its case (document numbers are unique whatever their case)."""
    key = (key or "").strip()
    if not key:
        return None
    return db.session.scalars(sa.select(TrainingSubject).where(sa.func.lower(TrainingSubject.key) == key.lower())
                              .order_by(TrainingSubject.id)).first()


def register_subject(*, kind: str, key: str, title: str, category: str | None = None,
                     department_id: int | None = None, page_url: str | None = None, days_allowed: int = 14,
                     min_read_seconds: int = 0) -> TrainingSubject:
    """A new thing to train on (e.g. a document when it is registered). Its key is unique within its kind."""
    if subject(kind, key) is not None:
        raise ValidationError("key", f"{key} is already a training subject.")
    row = TrainingSubject(kind=kind, key=key, title=title, category=category, department_id=department_id,
                          page_url=page_url, days_allowed=days_allowed, min_read_seconds=min_read_seconds,
                          created_at=now_utc())
    db.session.add(row)
    db.session.flush()
    return row


def update_subject(row: TrainingSubject, **values: object) -> TrainingSubject:
    """The owner changed what the subject mirrors (department, default days allowed, minimum reading time...)."""
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    for name, value in changed.items():
        setattr(row, name, value)
    if changed:
        db.session.flush()
    return row


# --- items -----------------------------------------------------------------------------------------------------------


def item_for(source_type: str, source_id: int) -> TrainingItem | None:
    """The item an owner's record (e.g. a document revision) was published as."""
    return db.session.scalar(sa.select(TrainingItem).where(TrainingItem.source_type == source_type,
                                                           TrainingItem.source_id == source_id))


def items_for(source_type: str, source_ids: Sequence[int]) -> dict[int, TrainingItem]:
    """source id -> item, for many owner records at once."""
    if not source_ids:
        return {}
    return {i.source_id: i for i in db.session.scalars(sa.select(TrainingItem).where(
        TrainingItem.source_type == source_type, TrainingItem.source_id.in_(list(source_ids))))}


def current_item(row: TrainingSubject) -> TrainingItem | None:
    """The item people train on now: the newest published one that is neither superseded nor retired."""
    return db.session.scalar(sa.select(TrainingItem).where(
        TrainingItem.subject_id == row.id, TrainingItem.superseded_at.is_(None), TrainingItem.retired_at.is_(None))
        .order_by(TrainingItem.version_major.desc(), TrainingItem.version_minor.desc()).limit(1))


def publish_item(row: TrainingSubject, *, version_label: str, version_major: int, version_minor: int,
                 major_change: bool, source_type: str, source_id: int, content_url: str, content_type: str,
                 effective_on: date | None, method: str = METHOD_READ_AND_SIGN,
                 published_at: datetime | None = None) -> TrainingItem:
    """A version becomes something people train on (e.g. a revision at its final approval). The owner then assigns
    it (`engine.assign_for_item`) in the same unit of work."""
    if method not in METHODS:
        raise ValidationError("method", f"Training method must be one of: {', '.join(METHODS)}.")
    item = TrainingItem(subject_id=row.id, version_label=version_label, version_major=version_major,
                        version_minor=version_minor, major_change=major_change, method=method,
                        content_url=content_url, content_type=content_type, source_type=source_type,
                        source_id=source_id, published_at=published_at or now_utc(), effective_on=effective_on)
    db.session.add(item)
    db.session.flush()
    return item


def released(newest: TrainingItem, replaced: Sequence[TrainingItem], at: datetime) -> None:
    """The owner released `newest` at `at` (it is, or stays, in effect) and replaced the items in `replaced`: each is
    superseded, and its open training closed (or kept, by the `ATTEST_TRAINING_SUPERSEDED_POLICY` setting). An item
    replaced before it ever took effect takes effect and is superseded at the same moment. After a minor change,
    training on an earlier item of the same major version still counts for people whose requirements all say "major
    changes only": their open training on it stays open."""
    with db.session.no_autoflush:
        if newest.effective_at is None:
            newest.effective_at = at
        for item in replaced:
            if item.effective_at is None:
                item.effective_at = at
            item.superseded_at = at
    db.session.flush()
    if not replaced:
        return
    policy = current_app.config["ATTEST_TRAINING_SUPERSEDED_POLICY"]
    reason = f"Superseded by {newest.subject.version_noun} {newest.version_label}"
    same_major = [i.id for i in replaced if i.version_major == newest.version_major]
    if same_major:
        engine.supersede_open_assignments(item_ids=same_major, reason=reason, policy=policy,
                                          keep_user_ids=engine.major_only_holders(newest.subject_id))
    other = [i.id for i in replaced if i.version_major != newest.version_major]
    if other:
        engine.supersede_open_assignments(item_ids=other, reason=reason, policy=policy)


def retired(item: TrainingItem, *, at: datetime, reason: str) -> int:
    """The owner retired the item (e.g. a document made obsolete): nothing is left to train on, so every open
    assignment on the subject is cancelled with the reason. Returns how many were cancelled."""
    item.retired_at = at
    item.retired_reason = reason
    db.session.flush()
    return engine.cancel_open_on_subject(item.subject_id, reason=reason)


# --- open training on items ------------------------------------------------------------------------------------------


def with_open_training(item_ids: Sequence[int]) -> set[int]:
    """Of these items, those someone still has open training on."""
    if not item_ids:
        return set()
    return set(db.session.scalars(sa.select(TrainingAssignment.item_id).where(
        TrainingAssignment.item_id.in_(list(item_ids)), TrainingAssignment.status == OPEN).distinct()))


def untrained(item: TrainingItem) -> list[User]:
    """People with open training on the item, by name."""
    return list(db.session.scalars(
        sa.select(User).join(TrainingAssignment, TrainingAssignment.user_id == User.id)
        .where(TrainingAssignment.item_id == item.id, TrainingAssignment.status == OPEN)
        .order_by(User.full_name)))
