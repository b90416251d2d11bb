"""Fan-out benchmark: approving a revision whose training audience holds N users (default 10,000).

The final approval runs through the same service call the approval page uses (`qms.documents.services.approve`),
audit trail on, in one unit of work: signature, state change, N assignments and their N version rows, sealed into the
hash chain at commit. For comparison it times the floor: plain `sqlite3` executemany writing the same rows (the N
assignments and N version rows) into tables of the same shape. The last line is
`fanout_users=<n> seconds=<s> floor_seconds=<s> ratio=<r>`; targets on 2 cores with SQLite: seconds <= 1, ratio <= 4.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "Correct-Horse-Battery-9"


def build(n_users: int):
    """Organisation, N audience users holding the job function, and a revision waiting for its final approval."""
    from core import bulk, clock
    from core.auth import services as auth
    from core.auth.models import User
    from core.db import transaction
    from core.org import Department, JobFunction, Site
    from qms.documents import services
    from signatures.services import authenticate
    from training.models import UserJobFunction

    today = clock.now_utc().date()
    with transaction() as session:
        site = Site(code="B", name="Bench site")
        dept = Department(site=site, code="QA", name="Quality")
        jf = JobFunction(code="OP", name="Operator", department=dept)
        session.add_all([site, dept, jf])
        session.flush()
        people = {}
        for name, role in (("author", "document_author"), ("reviewer", "supervisor"), ("approver", "qa_approver")):
            people[name], _ = auth.create_user(username=name, full_name=name.title(), email=f"{name}@example.com",
                                               roles={role}, password=PASSWORD, must_change_password=False)
        now = clock.now_utc()
        ids = bulk.bulk_insert(User, [{"username": f"op{i:05d}", "full_name": f"Operator {i}", "active": True,
                                       "email": f"op{i:05d}@example.com", "created_at": now}
                                      for i in range(n_users)])
        bulk.bulk_insert(UserJobFunction, [{"user_id": uid, "job_function_id": jf.id,
                                            "valid_from": today - timedelta(days=1)} for uid in ids])
        document = services.create_document(number="SOP-QA-001", title="Bench procedure", doc_type="SOP",
                                            department_id=dept.id, owner_id=people["author"].id,
                                            audience_job_function_ids=[jf.id], actor=people["author"])
        revision = services.start_revision(document, author=people["author"], major=True, change_summary="First",
                                           reason="New", content_markdown="# Purpose\n\nBench.")
        services.set_routing(revision, actor=people["author"], reviewer_ids=[people["reviewer"].id],
                             approver_ids=[people["approver"].id])
    for step, user in (("submit", "author"), ("review", "reviewer")):
        with transaction():
            proof = authenticate(people[user], password=PASSWORD, totp_code=None)
        with transaction():
            if step == "submit":
                services.submit_for_review(revision, actor=people[user], proof=proof,
                                           expected_row_version=revision.row_version)
            else:
                services.review(revision, actor=people[user], proof=proof, expected_row_version=revision.row_version)
    return revision, people["approver"]


def approve_timed(revision, approver) -> float:
    from core.db import transaction
    from qms.documents import services
    from signatures.services import authenticate

    with transaction():
        proof = authenticate(approver, password=PASSWORD, totp_code=None)
    started = time.perf_counter()
    with transaction():
        services.approve(revision, actor=approver, proof=proof, expected_row_version=revision.row_version)
    return time.perf_counter() - started


def floor_seconds(n_users: int, workdir: Path) -> float:
    """Plain sqlite3: the same N assignment rows and N version rows, one transaction."""
    con = sqlite3.connect(workdir / "floor.db")
    columns = ("id INTEGER PRIMARY KEY, user_id INTEGER, document_id INTEGER, revision_id INTEGER, status TEXT, "
               "source_type TEXT, source_id INTEGER, due_on DATE, assigned_at DATETIME, completed_at DATETIME, "
               "signature_id INTEGER, closed_reason TEXT")
    con.execute(f"CREATE TABLE a ({columns}, UNIQUE (user_id, revision_id))")
    con.execute(f"CREATE TABLE v ({columns.replace(' PRIMARY KEY', '')}, transaction_id INTEGER, "
                f"operation_type INTEGER, PRIMARY KEY (id, transaction_id))")
    rows = [(i, i, 1, 1, "open", "revision_approval", 1, "2026-12-01", "2026-11-23 10:00:00", None, None, None)
            for i in range(1, n_users + 1)]
    started = time.perf_counter()
    with con:
        con.executemany("INSERT INTO a VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.executemany("INSERT INTO v VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [(*r, 7, 0) for r in rows])
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args(argv)
    from flask_migrate import upgrade

    from app import create_app
    from core.auth import passwords
    from core.db import db
    from training.models import TrainingAssignment

    passwords.use_fast_hashing_for_tests()  # the bench measures the fan-out, not argon2
    with tempfile.TemporaryDirectory(prefix="attest-fanout-") as tmp:
        workdir = Path(tmp)
        app = create_app({"DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}", "TOTP_REQUIRED": "none",
                          "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
                          "SESSION_COOKIE_SECURE": False})
        with app.app_context():
            upgrade()
            revision, approver = build(args.users)
            seconds = approve_timed(revision, approver)
            created = db.session.query(TrainingAssignment).count()
            assert created == args.users, f"expected {args.users} assignments, found {created}"
            result = app.test_cli_runner().invoke(args=["audit", "verify"])
            assert result.exit_code == 0, result.output
            db.session.remove()
            db.engine.dispose()
        floor = floor_seconds(args.users, workdir)
    print(f"assignments_created={created}")
    print(f"fanout_users={args.users} seconds={seconds:.3f} floor_seconds={floor:.3f} ratio={seconds / floor:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
