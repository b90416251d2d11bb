"""How document control tells training what happened, by explicit calls in the same unit of work.

A document is a training subject (kind "document", key its number) from the moment it is registered; its training
audience is a set of requirements on that subject. A revision becomes a training item at its final approval, and its
assignments are created in the approval transaction: either the approval and every assignment exist, or neither does.
Its release, replacement and retirement are told to training in the transaction that makes them. Training never reads
a qms table: it finds the revision again by the item's source (`qms_document_revision`, revision id), and shows its
content through the item's content link.

Every function flushes and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from flask import current_app

from core.db import db
from qms.documents.models import Document, Revision
from training import engine, items
from training.matrix import services as matrix
from training.models import KIND_DOCUMENT, TrainingItem, TrainingSubject

SOURCE = Revision.signable_type  # "qms_document_revision": the items' source type, and what read-and-sign signs


def _path(endpoint: str, **values: object) -> str:
    """The application path of a page (without the script root: links add the one they are served under). Built from
    the URL map, so it works outside a request too (commands, jobs, the demo)."""
    return current_app.url_map.bind("localhost").build(endpoint, values)


def subject_of(document: Document) -> TrainingSubject:
    """The document's training subject (registered now if an older document has none)."""
    return items.subject(KIND_DOCUMENT, document.number) or register(document)


def register(document: Document) -> TrainingSubject:
    """A new document becomes something people can be required to train on."""
    return items.register_subject(
        kind=KIND_DOCUMENT, key=document.number, title=document.title, category=document.doc_type,
        department_id=document.department_id, page_url=_path("documents.show", document_id=document.id),
        days_allowed=document.training_window_days, min_read_seconds=document.min_read_seconds or 0)


def sync(document: Document) -> TrainingSubject:
    """The document's settings changed: training's copy of what it needs follows (owning department, training
    window as the default days allowed, minimum reading time)."""
    return items.update_subject(subject_of(document), department_id=document.department_id,
                                days_allowed=document.training_window_days,
                                min_read_seconds=document.min_read_seconds or 0)


def set_audience(document: Document, job_function_ids: Iterable[int]) -> tuple[int, int]:
    """The document's training audience: holders of these job functions must train on it (default settings); job
    functions left out no longer must. Returns (assigned, cancelled)."""
    return matrix.set_job_function_audience(subject_of(document), job_function_ids)


def audience_ids(document: Document) -> list[int]:
    """Ids of the job functions the document's requirements name."""
    return [j.id for j in matrix.audience(subject_of(document))]


def item_of(revision: Revision) -> TrainingItem | None:
    """The training item the revision was published as (None before its final approval)."""
    return items.item_for(SOURCE, revision.id)


def items_of(revisions: Sequence[Revision]) -> dict[int, TrainingItem]:
    """revision id -> item, for the revisions that were published."""
    return items.items_for(SOURCE, [r.id for r in revisions])


def retraining_job_functions(revision: Revision) -> list[int]:
    """The job functions whose holders train on this revision when it is approved: every requirement's for a major
    revision, only those requiring every revision for a minor one."""
    return engine.retraining_job_functions(subject_of(revision.document).id, major_change=revision.minor == 0)


def as_item(revision: Revision) -> TrainingItem:
    """The revision as a training item, mirroring its facts as they stand (approval, and for a revision written
    directly in force, its effect and replacement times)."""
    if revision.content_format == "pdf":
        link, kind = _path("documents.content_pdf", document_id=revision.document_id,
                           revision_id=revision.id), "application/pdf"
    else:
        link, kind = _path("documents.content", document_id=revision.document_id,
                           revision_id=revision.id), "text/html"
    item = items.publish_item(
        subject_of(revision.document), version_label=revision.label, version_major=revision.major,
        version_minor=revision.minor, major_change=revision.minor == 0, source_type=SOURCE, source_id=revision.id,
        content_url=link, content_type=kind, effective_on=revision.effective_on,
        published_at=revision.approved_at or revision.effective_at)
    if revision.effective_at is not None or revision.superseded_at is not None:
        item.effective_at, item.superseded_at = revision.effective_at, revision.superseded_at
        item.retired_at, item.retired_reason = revision.obsoleted_at, revision.obsolete_reason
        db.session.flush()
    return item


def publish(revision: Revision) -> TrainingItem:
    """The final approval: the revision becomes a training item and every holder of the job functions its audience
    names is assigned it, due on its effective date."""
    item = as_item(revision)
    engine.assign_for_item(item, due_on=revision.effective_on, source_id=revision.id)
    return item


def released(newest: Revision, replaced: Sequence[Revision], at: datetime) -> None:
    """Revisions were released at `at`: `newest` is in force, `replaced` are superseded (their open training closes
    by the configured policy)."""
    published = items_of([newest, *replaced])
    if newest.id not in published:  # pragma: no cover - a released revision was approved, hence published
        return
    items.released(published[newest.id], [published[r.id] for r in replaced if r.id in published], at)


def retired(revision: Revision, *, reason: str) -> int:
    """The revision in force was made obsolete: its item is retired and the open training on the document
    cancelled. Returns how many assignments were cancelled."""
    item = item_of(revision)
    if item is None:  # pragma: no cover - an effective revision was published
        return 0
    return items.retired(item, at=revision.obsoleted_at, reason=reason)
