"""Shared by the concurrency stress and fault-injection tests: records written directly as set-up, threads lined up
on a barrier, and the audit check every such test ends with."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from typing import Any

from core import clock
from core.db import db, transaction
from core.errors import AttestError
from qms.documents import publish
from qms.documents.models import EFFECTIVE, Document, Revision


def revision_in_force(p: Any, number: str) -> Revision:
    """A document for the job function of `p` with revision 1.0 in force since today, written directly: the tests
    using it are about what happens to a revision in force (training, retraining), not about how it was signed."""
    now = clock.now_utc()
    with transaction():
        document = Document(number=number, title=f"Procedure {number}", doc_type="SOP", department_id=p.department_id,
                            owner_id=p.author.id, created_at=now)
        revision = Revision(document=document, major=1, minor=0, status=EFFECTIVE, author_id=p.author.id,
                            content_markdown=f"# {number}\n\nDo it right.\n", change_summary="First issue",
                            reason="New procedure", created_at=now, submitted_at=now, approved_at=now,
                            effective_on=now.date(), effective_at=now)
        revision.content_sha256 = revision.computed_content_sha256()
        db.session.add_all([document, revision])
        db.session.flush()
        publish.register(document)
        publish.set_audience(document, [p.job_function_id])
        publish.as_item(revision)
    return revision


def assignment_rows(revision: Revision, user_ids: list[int], **values: Any) -> list[dict[str, Any]]:
    """Rows for `training.engine.create_assignments`: these people must train on the revision's training item."""
    item = publish.item_of(revision)
    return [{"user_id": uid, "subject_id": item.subject_id, "item_id": item.id, **values} for uid in user_ids]


def audit_verifies(app: Any) -> str:
    """`flask audit verify` passes: the hash chain is unbroken and every live record matches its last version."""
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    return result.output


def race(app: Any, count: int, prepare: Callable[[int], Any], act: Callable[[int, Any], Any]) -> list[Any]:
    """Run `count` threads, each in its own application context, session and connection: `prepare(i)` (what a page
    load does), then all wait on one barrier, then `act(i, prepared)` in one unit of work each, at the same instant.

    Returns each thread's result, or the exception it raised (a refusal or anything else, for the test to judge)."""

    def body(i: int, barrier: threading.Barrier) -> Any:
        prepared = prepare(i)
        barrier.wait(60)
        with transaction():
            return act(i, prepared)

    return _in_threads(app, count, body)


def at_once(app: Any, *actions: Callable[[], Any]) -> list[Any]:
    """Like `race`, for actions that open their own units of work (a background job and a page, say): each in its
    own thread, application context and session, released together. Returns each result or the exception raised."""

    def body(i: int, barrier: threading.Barrier) -> Any:
        barrier.wait(60)
        return actions[i]()

    return _in_threads(app, len(actions), body)


def _in_threads(app: Any, count: int, body: Callable[[int, threading.Barrier], Any]) -> list[Any]:
    outcomes: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def target(i: int) -> None:
        try:
            with app.app_context():
                try:
                    outcomes[i] = body(i, barrier)
                finally:
                    db.session.remove()
        except BaseException as exc:  # judged by the test
            outcomes[i] = exc

    db.session.rollback()  # the test's own session holds no snapshot or lock while the threads run
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread is still waiting"
    db.session.expire_all()
    return outcomes


def refusals(outcomes: list[Any]) -> list[AttestError]:
    """The refusals among `outcomes`; anything else raised (a deadlock, an integrity error) fails the test."""
    unexpected = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, AttestError)]
    assert unexpected == [], f"not a clean refusal: {unexpected!r}"
    return [o for o in outcomes if isinstance(o, AttestError)]


def sqlite_writable(path: str) -> bool:
    """Could another connection to the SQLite file at `path` take the write lock this instant (BEGIN IMMEDIATE with no
    waiting)? False while a unit of work holds it."""
    with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return False
        other.execute("ROLLBACK")
        return True
