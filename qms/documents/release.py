"""The release of approved revisions: making them effective, and the "when trained" release policy.

`qms.documents.services.release_due` (the daily job of the revision lifecycle) asks which due revisions are held
(`held_for_training`) and releases the others (`release_revisions`). A document whose release policy is "when
trained" is held while anyone assigned the revision has not trained, unless QA signs an override
(`override_release`), which releases it at once if its effective date has come.

Every function flushes and never commits (the caller wraps it in `core.db.transaction()`).
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.errors import InvalidTransition
from qms.documents import publish
from qms.documents.models import (
    APPROVED,
    EFFECTIVE,
    RELEASE_WHEN_TRAINED,
    SUPERSEDED,
    Document,
    Revision,
)
from qms.rules import add_months, today_utc
from signatures.lifecycle import Act
from signatures.services import SignerProof
from training import items as training_items


def release_revisions(revisions: list[Revision], now: datetime) -> None:
    """Release one document's due `revisions` (oldest label first): the newest revision of the document becomes
    (or stays) effective and every other one that was or would have been in force is superseded. When two servers
    split one document's due revisions, the one that runs second may find a newer revision already in force; its
    older revision is then superseded at the moment it takes effect, never put back in force.

    Each row is changed once, in one flush: a second flush of a row in the same transaction would rewrite its
    version row, which the append-only audit tables refuse.

    No permission, status or hold is checked here: the callers (`services.release_due`, `override_release`) have
    decided, under their locks, that these revisions are released."""
    document_id = revisions[0].document_id
    db.session.execute(sa.select(Document.id).where(Document.id == document_id).with_for_update())
    interval = revisions[0].document.review_interval_months
    previous = list(db.session.scalars(
        sa.select(Revision).where(Revision.document_id == document_id, Revision.status == EFFECTIVE)
        .with_for_update().execution_options(populate_existing=True)))
    newest = max([*revisions, *previous], key=lambda r: (r.major, r.minor))
    from qms.documents.services import LIFECYCLE  # the declared system moves (services imports this module)

    with db.session.no_autoflush:
        for old in previous:
            if old is not newest:
                LIFECYCLE.move(old, SUPERSEDED)
                old.superseded_at = now
        for revision in revisions:
            if revision is newest:
                LIFECYCLE.move(revision, EFFECTIVE)
                revision.effective_at = now
                revision.review_due_on = add_months(revision.effective_on, interval)
            else:
                LIFECYCLE.move(revision, SUPERSEDED)
                revision.effective_at, revision.superseded_at = now, now
    db.session.flush()
    # training follows in the same transaction: the newest item is in force, the replaced ones are superseded and
    # their open training closed (or kept, by policy); the history keeps both
    publish.released(newest, [r for r in [*previous, *revisions] if r is not newest], now)


def held_for_training(revision_ids: list[int]) -> set[int]:
    """Of these revisions, those whose document is released "when trained", with open assignments on the revision
    and no override."""
    if not revision_ids:
        return set()
    candidates = list(db.session.scalars(
        sa.select(Revision).join(Document, Document.id == Revision.document_id)
        .where(Revision.id.in_(revision_ids), Document.release_policy == RELEASE_WHEN_TRAINED,
               Revision.release_override_note.is_(None))))
    published = publish.items_of(candidates)
    busy = training_items.with_open_training([i.id for i in published.values()])
    return {r.id for r in candidates if r.id in published and published[r.id].id in busy}


def untrained_assignees(revision: Revision) -> list[User]:
    """People with open training on the revision, by name."""
    item = publish.item_of(revision)
    return training_items.untrained(item) if item is not None else []


def release_held(revision: Revision) -> bool:
    """Is this approved revision's release held until its assignees have trained?"""
    return revision.status == APPROVED and revision.id in held_for_training([revision.id])


def held_releases(today: date | None = None) -> list[Revision]:
    """Approved revisions past their effective date whose release is held for training."""
    today = today or today_utc()
    due = list(db.session.scalars(sa.select(Revision.id).where(Revision.status == APPROVED,
                                                               Revision.effective_on <= today)))
    held = held_for_training(due)
    return list(db.session.scalars(sa.select(Revision).where(Revision.id.in_(held))
                                   .order_by(Revision.effective_on, Revision.id)))


def override_release(revision: Revision, *, actor: User, proof: SignerProof,
                     expected_row_version: int | str | None, justification: str) -> Revision:
    """QA releases a revision held "until trained" although people have not trained yet. The signature ("Approved
    with open training") carries the justification and names every outstanding person, and so does the revision's
    audited override note. If the effective date has come, the revision becomes effective at once.

    The step is the revision lifecycle's "release-override" (`qms.documents.services.LIFECYCLE`); its check, the
    signature's comment and its effect are the three functions below."""
    from qms.documents.services import LIFECYCLE

    LIFECYCLE.apply(revision, "release-override", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=justification)
    return revision


def check_override(act: Act) -> None:
    """Only a release held for training can be overridden, and only while someone has not trained."""
    revision = act.record
    if revision.document.release_policy != RELEASE_WHEN_TRAINED or revision.release_override_note is not None:
        raise InvalidTransition(f"{revision.audit_title()} is not held for training: nothing to override.")
    outstanding = untrained_assignees(revision)
    if not outstanding:
        raise InvalidTransition(f"Everyone assigned {revision.audit_title()} has trained: nothing to override.")
    act.data["names"] = "; ".join(f"{u.full_name} ({u.username})" for u in outstanding)
    act.data["count"] = len(outstanding)


def override_comment(act: Act) -> str:
    # the signature comment is short (signatures allow 2,000 characters) and binds the full list by its SHA-256; the
    # list itself is the revision's audited override note, never cut
    listed = hashlib.sha256(act.data["names"].encode("utf-8")).hexdigest()
    return f"{act.text[:1500]} — {act.data['count']} not yet trained, named in the override note " \
           f"(SHA-256 of the list {listed})"


def override(act: Act) -> None:
    """The override note; the release itself at once if the effective date has come (one write of the row)."""
    revision = act.record
    revision.release_override_note = f"{act.text} — not yet trained ({act.data['count']}): {act.data['names']}"
    if revision.effective_on is not None and revision.effective_on <= today_utc():
        release_revisions([revision], now_utc())
