"""An existing database upgrades to training items with nothing lost (migration 0011).

The fixture (tests/fixtures/pre_training_items) is a database populated by `flask demo load` at the schema head
before the move (0010), for SQLite and for PostgreSQL, with what that code answered about it: row counts and the
qualification of every demo person on every demo document at three moments. The test restores it into a scratch
database of the pass's own dialect, upgrades it to the head, and finds the same counts, the same 135,450 answers, an
intact hash chain with the move recorded as one sealed transaction, and the history of a moved record on its page.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pre_training_items"


def _dialect() -> str:
    url = os.environ.get("ATTEST_TEST_DATABASE_URL") or ""
    return "postgresql" if url.startswith("postgresql") else "sqlite"


@contextmanager
def _restored(tmp_path: Path) -> Iterator[str]:
    """A scratch database holding the fixture of this pass's dialect, at schema 0010."""
    dump = gzip.open(FIXTURE / f"{_dialect()}.sql.gz", "rt", encoding="utf-8").read()
    if _dialect() == "sqlite":
        path = tmp_path / "pre-items.db"
        with sqlite3.connect(path) as con:
            con.executescript(dump)
        yield f"sqlite:///{path}"
        return
    from core.testing.databases import postgres_database

    with postgres_database(os.environ["ATTEST_TEST_DATABASE_URL"], "attest_upgrade") as url:
        u = make_url(url)
        env = {**os.environ, "PGPASSWORD": u.password or ""}
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
                        "-U", u.username or "postgres", "-d", u.database], input=dump, text=True, check=True,
                       env=env, stdout=subprocess.DEVNULL)
        yield url


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    """The fixture database upgraded to the head: (application, facts recorded before the upgrade)."""
    from flask import request_started
    from flask_migrate import upgrade

    from app import create_app
    from core.db import db
    from testkit.plugin import _fresh_g

    facts = json.load(gzip.open(FIXTURE / f"{_dialect()}.json.gz", "rt", encoding="utf-8"))
    with _restored(tmp_path_factory.mktemp("upgrade")) as url:
        application = create_app({"DATABASE_URL": url, "SECRET_KEY": "upgrade-test-" + "k" * 40,
                                  "SESSION_COOKIE_SECURE": False, "TESTING": True})
        request_started.connect(_fresh_g, application, weak=False)  # a fresh `g` per request, as in production
        with application.app_context():
            upgrade()
            yield application, facts
            db.session.remove()
            db.engine.dispose()


def _count(table: str) -> int:
    from core.db import db

    return db.session.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar()


def test_every_record_is_moved_and_nothing_is_lost(upgraded):
    _app, facts = upgraded
    before = facts["counts"]
    assert before["training_assignment"] > 7000 and before["qms_document_audience"] > 400  # a real demo, not empty
    # records of the quality system and of the platform are untouched
    for table, n in before.items():
        if not table.startswith(("qms_document_audience", "training_assignment_version", "audit_")):
            assert _count(table) == n, table
    assert _count("training_subject") == before["qms_document"]
    assert _count("training_item") == _count("qms_document_revision") - sum(
        1 for _ in _drafts())
    assert _count("training_requirement") == before["qms_document_audience"]
    assert _count("training_assignment") == before["training_assignment"]
    # history moves with the records: every earlier version row is still there, plus one per record for the move
    assert _count("training_requirement_version") == before["qms_document_audience_version"] + len(_requirement_ids())
    assert _count("training_assignment_version") == (before["training_assignment_version"]
                                                     + before["training_assignment"])
    assert _count("audit_transaction") == before["audit_transaction"] + 1


def _drafts() -> list[int]:
    from core.db import db

    return list(db.session.scalars(sa.text(
        "SELECT id FROM qms_document_revision WHERE status IN ('draft', 'in_review')")))


def _requirement_ids() -> set[int]:
    from core.db import db

    return set(db.session.scalars(sa.text("SELECT DISTINCT id FROM training_requirement_version")))


def test_every_assignment_keeps_its_revision_completion_and_signature(upgraded):
    from core.db import db

    rows = db.session.execute(sa.text(
        "SELECT a.id, i.source_type, i.source_id, a.signature_id, s.record_id, s.record_type "
        "FROM training_assignment a JOIN training_item i ON i.id = a.item_id "
        "LEFT JOIN sig_signature s ON s.id = a.signature_id")).all()
    assert rows and all(source_type == "qms_document_revision" for _a, source_type, *_rest in rows)
    signed = [r for r in rows if r.signature_id is not None]
    assert len(signed) > 500
    # a completion's signature is on the very revision the assignment's item stands for
    assert all(r.record_type == "qms_document_revision" and r.record_id == r.source_id for r in signed)


def test_qualification_answers_are_the_same_now_and_at_past_moments(upgraded):
    from core.auth.models import User
    from core.db import db
    from training.models import TrainingSubject
    from training.qualification.services import qualify_many

    _app, facts = upgraded
    users = list(db.session.scalars(sa.select(User).order_by(User.username)))
    subjects = list(db.session.scalars(sa.select(TrainingSubject).order_by(TrainingSubject.key)))
    assert len(facts["moments"]) == 3
    qualified = []
    for moment in facts["moments"]:
        answers = qualify_many([(u, s) for u in users for s in subjects], datetime.fromisoformat(moment))
        now = [[u.username, s.key, q.qualified, q.required.label if q.required else None,
                q.trained.label if q.trained else None, q.completed_at.isoformat() if q.completed_at else None]
               for u in users for s in subjects for q in [answers[(u.id, s.id)]]]
        before = facts["answers"][moment]
        assert len(now) == len(before) == len(users) * len(subjects)
        assert [a for a, b in zip(now, before, strict=True) if a != b] == []
        qualified.append(sum(1 for row in now if row[2]))
    assert all(n > 500 for n in qualified)


def test_the_audit_trail_verifies_and_records_the_move_as_one_sealed_transaction(upgraded):
    from core.audit import AuditTransaction
    from core.db import db

    app, _facts = upgraded
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output
    move = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.chain_seq.desc())).first()
    assert move.channel == "migration" and move.printed_name.startswith("schema migration 0011")
    assert move.reason.startswith("Schema migration 0011") and move.hash is not None
    assert set(move.record_types.strip(",").split(",")) == {
        "training_subject", "training_item", "training_requirement", "training_assignment"}


def test_the_history_of_a_moved_requirement_is_on_its_page(upgraded):
    from core.audit.views import record_history
    from core.auth import services as accounts
    from core.db import db, transaction
    from testkit.plugin import PASSWORD, login
    from training.models import TrainingRequirement

    app, _facts = upgraded
    requirement = db.session.scalars(sa.select(TrainingRequirement).order_by(TrainingRequirement.id)).first()
    history = record_history(TrainingRequirement, requirement.id)
    assert len(history) >= 2
    first, moved = history[0], history[-1]
    assert first.tx.channel == "cli" and first.changes[0].action == "Created"
    assert ("Job function id (before migration 0011)", "", str(requirement.target_id)) in first.changes[0].fields
    assert moved.tx.channel == "migration" and moved.changes[0].action == "Changed"
    assert ("Target", "—", str(requirement.target_id)) in moved.changes[0].fields

    # a coordinator who may also read audit trails sees it on the requirement's own page
    with transaction():
        reader, _ = accounts.create_user(username="cora.coord", full_name="Cora Coordinator",
                                         email="cora@example.com", roles={"training_coordinator", "auditor"},
                                         password=PASSWORD, must_change_password=False)
        reader.security.totp_secret = pyotp.random_base32()
        reader.security.totp_enrolled_at = reader.created_at
    client = app.test_client()
    assert login(client, reader).status_code == 302
    page = client.get(f"/training/matrix/{requirement.subject_id}/{requirement.target_id}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "Audit trail of this requirement" in body
    assert "Job function id (before migration 0011)" in body and "schema migration 0011" in body
