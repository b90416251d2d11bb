"""Many sessions and processes doing the same signed step at the same instant: one of them does it, the others are
refused cleanly, nothing is done twice, and the audit chain still verifies.

Threads (each with its own application context, session and connection) are lined up on a barrier; the release runs
as real `flask qms release-due` processes. The two revisions approvers sign together and the single-server release
are covered in test_documents_concurrency.py.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import clock
from core.audit import AuditTransaction
from core.auth.models import User
from core.db import db, transaction
from core.errors import InvalidTransition
from core.testing.pages import events
from features.support import documents as docs
from qms.documents import publish, services
from qms.documents.models import APPROVED, EFFECTIVE, SUPERSEDED, Document, Revision
from signatures import models as sig
from signatures.services import authenticate
from testkit.plugin import PASSWORD
from tests.integration.stress_helpers import assignment_rows, audit_verifies, race, refusals, revision_in_force
from training import engine
from training.models import COMPLETED, OPEN, SOURCE_REVISION_APPROVAL, TrainingAssignment
from training.read_and_sign import services as read_and_sign

ROOT = Path(__file__).resolve().parents[2]


def _statuses(model: type, record_id: int) -> list[str]:
    """The record's status in each of its audited versions, oldest first."""
    versions = version_class(model)
    return list(db.session.scalars(sa.select(versions.status).where(versions.id == record_id)
                                   .order_by(versions.transaction_id)))


# --- the final approval signature, sent twice at once -----------------------------------------------------------------


def test_the_final_approval_sent_from_two_sessions_at_once_approves_once_and_assigns_training_once(app, p, make_user):
    trainees = [p.operator, make_user("olga.op", roles={"operator"}), make_user("oscar.op", roles={"operator"})]
    docs.hold(trainees, p.job_function_id)
    revision = docs.new_revision(p, docs.new_document(p))
    docs.route(p, revision, reviewers=[p.reviewer], approvers=[p.qa, p.qa2])
    docs.submit(p, revision)
    docs.review_as(p.reviewer, revision)
    docs.approve_as(p.qa2, revision)
    seen = docs.version(revision)
    proofs = [docs.prove(p.qa), docs.prove(p.qa)]  # the last approver's page open in two tabs: a ceremony in each
    revision_id, qa_id = revision.id, p.qa.id

    def load(i: int) -> tuple[Revision, User]:
        return db.session.get(Revision, revision_id), db.session.get(User, qa_id)

    def approve(i: int, loaded: tuple[Revision, User]) -> str:
        page, actor = loaded
        return services.approve(page, actor=actor, proof=proofs[i], expected_row_version=seen).status

    outcomes = race(app, 2, load, approve)

    [refused] = refusals(outcomes)
    assert isinstance(refused, InvalidTransition) and "it is Approved" in refused.message, refused
    assert outcomes.count(APPROVED) == 1
    revision = db.session.get(Revision, revision_id)
    assert revision.status == APPROVED
    assert _statuses(Revision, revision_id).count(APPROVED) == 1, "one state transition"
    assert sorted(s.signer_id for s in docs.signatures_of(revision) if s.meaning == sig.APPROVED) == sorted([qa_id,
                                                                                                         p.qa2.id])
    assigned = db.session.execute(sa.select(TrainingAssignment.user_id, TrainingAssignment.cycle)
                                  .where(TrainingAssignment.item_id == publish.item_of(revision).id)).all()
    assert sorted(assigned) == sorted((u.id, 0) for u in trainees), "one assignment per trainee, none twice"
    audit_verifies(app)


# --- twenty "Read and understood" submissions for one assignment ------------------------------------------------------

SUBMISSIONS = 20


# Twenty ceremonies of one person within a proof's two-minute life cannot each use a new TOTP code (one per 30 s, each
# used once): they sign with the password alone, which the ceremony allows when no second factor is required.
@pytest.mark.parametrize("app_config", [{"TOTP_REQUIRED": "none", "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 25}}],
                         ids=["password-signing"])
def test_twenty_read_and_understood_submissions_at_once_complete_the_assignment_once(app, p, make_user):
    trainee = make_user("tina.trainee", roles={"operator"}, full_name="Tina Trainee")
    revision = revision_in_force(p, "SOP-RS-001")
    with transaction():
        engine.create_assignments(assignment_rows(revision, [trainee.id], source_type=SOURCE_REVISION_APPROVAL))
    assignment = db.session.scalar(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == trainee.id))
    with transaction():
        read_and_sign.mark_opened(assignment, trainee)
    ids = assignment.id, revision.id, trainee.id

    def open_sign_page_and_authenticate(i: int):
        # as the signing page does: load the assignment, then authenticate in a unit of work of its own
        assignment = db.session.get(TrainingAssignment, ids[0])
        revision, user = db.session.get(Revision, ids[1]), db.session.get(User, ids[2])
        token = str(revision.concurrency_token)
        with transaction():
            proof = authenticate(user, password=PASSWORD, totp_code=None)
        assert proof is not None
        return assignment, revision, user, token, proof

    def sign(i: int, page) -> int:
        assignment, revision, user, token, proof = page
        return read_and_sign.complete(assignment, user=user, proof=proof, expected_version=token).id

    outcomes = race(app, SUBMISSIONS, open_sign_page_and_authenticate, sign)

    refused = refusals(outcomes)
    signed = [o for o in outcomes if isinstance(o, int)]
    assert len(signed) == 1 and len(refused) == SUBMISSIONS - 1, outcomes
    assert all(isinstance(r, InvalidTransition) and "not open" in r.message for r in refused), refused
    assignment = db.session.get(TrainingAssignment, ids[0])
    assert (assignment.status, assignment.signature_id) == (COMPLETED, signed[0])
    read = [s.id for s in docs.signatures_of(db.session.get(Revision, ids[1])) if s.meaning == sig.READ_AND_UNDERSTOOD]
    assert read == signed, "exactly one signature"
    assert _statuses(TrainingAssignment, assignment.id) == [OPEN, OPEN, COMPLETED]  # assigned, opened, completed
    audit_verifies(app)


# --- wrong passwords sent at the same instant -----------------------------------------------------------------------

GUESSES = 10


def test_wrong_passwords_sent_at_once_all_count_toward_lockout(app, make_user):
    """An attacker sending guesses in parallel gets no more than the limit: every failure is counted (the security
    row is locked while counting), the account locks once, and each failure is audited with its own attempt number."""
    from core.auth import services as auth

    victim = make_user("victor.victim", roles={"operator"}, full_name="Victor Victim")
    threshold = app.config["ATTEST_LOCKOUT_THRESHOLD"]
    assert GUESSES > threshold

    def guess(i: int, _prepared) -> bool:
        return auth.authenticate("victor.victim", f"wrong guess {i}").ok

    outcomes = race(app, GUESSES, lambda i: None, guess)

    assert outcomes == [False] * GUESSES
    victim = db.session.get(User, victim.id)
    assert victim.security.failed_attempts == GUESSES
    assert victim.security.locked
    attempts = sorted(json.loads(e.detail)["attempt"] for e in events("login.failure", victim))
    assert attempts == list(range(1, GUESSES + 1))
    assert [json.loads(e.detail)["failed_attempts"] for e in events("account.locked", victim)] == [threshold]
    assert not auth.authenticate("victor.victim", PASSWORD).ok  # locked, even with the right password
    audit_verifies(app)


# --- several `flask qms release-due` processes at once --------------------------------------------------------------

PROCESSES = 3
DOCUMENTS = 8
TWICE = 3  # documents whose 1.1 and 1.2 fall due together


def _labels(n: int) -> list[tuple[int, int]]:
    return [(1, 0), (1, 1), (1, 2)] if n < TWICE else [(1, 0), (1, 1)]


def _documents_due(p, due_on) -> tuple[list[int], list[int]]:
    """Each document has 1.0 in force and one or two approved revisions due on `due_on`; three people have open
    training on every revision. Returns (ids of the due revisions, ids of the revisions that will be replaced)."""
    now = clock.now_utc()
    trainees = [p.operator.id, p.reviewer.id, p.reviewer2.id]
    due: list[int] = []
    replaced: list[int] = []
    with transaction():
        for n in range(DOCUMENTS):
            document = Document(number=f"SOP-RD-{n:03d}", title=f"Released procedure {n}", doc_type="SOP",
                                department_id=p.department_id, owner_id=p.author.id, created_at=now)
            db.session.add(document)
            revisions = []
            for major, minor in _labels(n):
                in_force = minor == 0
                revision = Revision(document=document, major=major, minor=minor, author_id=p.author.id,
                                    status=EFFECTIVE if in_force else APPROVED, content_markdown=f"# {n} {minor}\n",
                                    change_summary="Update", reason="Periodic review", created_at=now,
                                    submitted_at=now, approved_at=now,
                                    effective_on=now.date() if in_force else due_on,
                                    effective_at=now if in_force else None)
                revision.content_sha256 = revision.computed_content_sha256()
                revisions.append(revision)
            db.session.add_all(revisions)
            db.session.flush()
            due += [r.id for r in revisions[1:]]
            replaced += [r.id for r in revisions[:-1]]
            publish.register(document)
            for r in revisions:
                publish.as_item(r)
            engine.create_assignments([row for r in revisions for row in assignment_rows(
                r, trainees, source_type=SOURCE_REVISION_APPROVAL)])
    return due, replaced


class _StartingGun:
    """Hold what every release run needs first, until all the processes wait for it, then let them go at once.

    PostgreSQL: an EXCLUSIVE lock on the revision table (their SELECT ... FOR UPDATE waits for it; pg_locks shows
    them waiting). SQLite: the database's write lock (their BEGIN IMMEDIATE waits; /proc shows the file open)."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self.postgres = url.get_backend_name() == "postgresql"

    def __enter__(self):
        if self.postgres:
            self.holder = db.engine.connect()
            self.holder.begin()
            self.holder.exec_driver_sql("LOCK TABLE qms_document_revision IN EXCLUSIVE MODE")
        else:
            self.holder = sqlite3.connect(self.url.database, isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")
        return self

    def _ready(self, processes: list[subprocess.Popen]) -> bool:
        if self.postgres:
            with db.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                            "'qms_document_revision'::regclass").scalar() == len(processes)
        target = os.path.realpath(self.url.database)

        def has_open(pid: int) -> bool:
            fds = Path(f"/proc/{pid}/fd")
            try:
                return any(os.path.realpath(fd) == target for fd in fds.iterdir())
            except OSError:
                return False

        return all(has_open(proc.pid) for proc in processes)

    def fire_when_all_wait(self, processes: list[subprocess.Popen]) -> None:
        deadline = time.monotonic() + 90
        while not self._ready(processes) and time.monotonic() < deadline:
            assert all(proc.poll() is None for proc in processes), "a release process ended before the start"
            time.sleep(0.05)
        if not self.postgres:
            time.sleep(0.3)  # from opening the file to waiting on its write lock
        self.holder.rollback() if self.postgres else self.holder.execute("ROLLBACK")

    def __exit__(self, *exc) -> None:
        self.holder.close()


def test_release_due_run_as_several_processes_at_once_releases_each_revision_exactly_once(app, p):
    today = clock.now_utc().date()
    due, replaced = _documents_due(p, today - timedelta(days=1))
    setup_tx = db.session.scalar(sa.select(sa.func.max(AuditTransaction.id)))
    db.session.rollback()
    url = db.engine.url
    env = {**os.environ, "ATTEST_DATABASE_URL": url.render_as_string(hide_password=False),
           "ATTEST_SECRET_KEY": app.config["SECRET_KEY"], "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "flask", "--app", "app", "qms", "release-due", "--date", today.isoformat()]

    with _StartingGun(url) as gun:
        processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(PROCESSES)]
        try:
            gun.fire_when_all_wait(processes)
        except BaseException:
            for proc in processes:
                proc.kill()
            raise
    outputs = [proc.communicate(timeout=120) for proc in processes]
    assert [proc.returncode for proc in processes] == [0] * PROCESSES, outputs
    counts = [int(re.search(r"^released (\d+) revisions? due", out, re.M).group(1)) for out, _ in outputs]
    assert sum(counts) == len(due), f"released per process: {counts}"

    db.session.expire_all()
    for document in db.session.scalars(sa.select(Document).where(Document.number.like("SOP-RD-%"))):
        newest = max(document.revisions, key=lambda r: (r.major, r.minor))
        assert [r.status for r in document.revisions] == [SUPERSEDED] * (len(document.revisions) - 1) + [EFFECTIVE]
        assert all(r.superseded_at is not None for r in document.revisions if r is not newest)

    versions = version_class(Revision)
    released_in: set[int] = set()
    for revision_id in due + [r for r in replaced if r not in due]:
        rows = db.session.execute(sa.select(versions.status, versions.effective_at, versions.transaction_id)
                                  .where(versions.id == revision_id, versions.transaction_id > setup_tx)
                                  .order_by(versions.transaction_id)).all()
        statuses = [row.status for row in rows]
        # released once (in force, or superseded at once by a newer revision due with it), superseded at most once
        assert statuses in ([EFFECTIVE], [SUPERSEDED], [EFFECTIVE, SUPERSEDED]), (revision_id, statuses)
        if revision_id in due:
            assert len({row.effective_at for row in rows}) == 1, f"revision {revision_id} released twice"
            released_in.add(rows[0].transaction_id)
    runs = db.session.execute(sa.select(AuditTransaction.channel, AuditTransaction.reason)
                              .where(AuditTransaction.id.in_(released_in))).all()
    assert set(runs) == {("cli", "Released on its effective date")} and len(runs) <= PROCESSES

    replaced_items = [i.id for i in publish.items_of([db.session.get(Revision, r) for r in replaced]).values()]
    closed = db.session.scalars(sa.select(TrainingAssignment).where(TrainingAssignment.item_id.in_(replaced_items)))
    for assignment in closed:
        assert _statuses(TrainingAssignment, assignment.id) == [OPEN, SUPERSEDED], assignment.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment)
                             .where(TrainingAssignment.status == OPEN)) == 3 * DOCUMENTS  # on the revisions in force

    again = app.test_cli_runner().invoke(args=["qms", "release-due", "--date", today.isoformat()])
    assert "released 0 revisions" in again.output, again.output
    audit_verifies(app)
