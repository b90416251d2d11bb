"""Fan-out benchmark: approving a revision whose training audience holds N users (default 10,000).

The final approval runs through the same service call the approval page uses (`qms.documents.services.approve`),
audit trail on, in one unit of work: signature, state change, the revision's training item, N assignments and their N
version rows, sealed into the hash chain at commit. For comparison it times the floor: plain `sqlite3` executemany
writing the same rows (the training item, the N assignments, their version rows and the audit transaction row, read
back from the benchmark database after the approval) in one transaction into a copy of the database taken just
before the approval, so into the same tables with the same indexes, unique and foreign-key constraints and triggers,
over a connection set up as the application's (WAL, synchronous=NORMAL, foreign keys on). The last line is
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


def authenticate_approver(approver):
    from core.db import transaction
    from signatures.services import authenticate

    with transaction():
        return authenticate(approver, password=PASSWORD, totp_code=None)


def approve_timed(revision, approver, proof) -> tuple[float, int]:
    """Seconds for the approval (one unit of work, committed and sealed) and the id of its audit transaction."""
    import sqlalchemy as sa

    from core.audit import AuditTransaction
    from core.db import db, transaction
    from qms.documents import services

    started = time.perf_counter()
    with transaction():
        services.approve(revision, actor=approver, proof=proof, expected_row_version=revision.row_version)
    elapsed = time.perf_counter() - started
    return elapsed, db.session.scalar(sa.select(sa.func.max(AuditTransaction.id)))


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection set up as the application sets up its own (core.db._sqlite_connect)."""
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
        con.execute(f"PRAGMA {pragma}")
    return con


def snapshot(database: Path, target: Path) -> None:
    """A copy of the database as it stands before the approval: the floor writes into the same schema (tables,
    indexes, unique and foreign-key constraints, triggers) holding the same data."""
    source, copy = sqlite3.connect(database), sqlite3.connect(target)
    source.backup(copy)
    source.close()
    copy.close()


def fanout_rows(database: Path, item_id: int, tx_id: int) -> dict[str, tuple[list[str], list[tuple]]]:
    """The rows the approval wrote for its audience, read back raw: the assignments, their version rows and the
    audit transaction row, and the training item the approval published with its version row (table -> (columns,
    rows)), in the order they were written."""
    con = sqlite3.connect(database)
    found = {}
    where = {"audit_transaction": ("id = ?", tx_id), "training_item": ("id = ?", item_id),
             "training_item_version": ("transaction_id = ?", tx_id), "training_assignment": ("item_id = ?", item_id),
             "training_assignment_version": ("transaction_id = ?", tx_id)}
    for table, (condition, value) in where.items():
        cursor = con.execute(f'SELECT * FROM "{table}" WHERE {condition} ORDER BY rowid', (value,))
        found[table] = ([d[0] for d in cursor.description], cursor.fetchall())
    con.close()
    return found


def floor_seconds(database: Path, rows: dict[str, tuple[list[str], list[tuple]]]) -> float:
    """Plain sqlite3 executemany writing the same rows into the snapshot taken before the approval, one transaction,
    with the application's connection settings."""
    con = _sqlite_connect(database)
    for table in rows:  # warm the page cache as the application's pooled connection is
        con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    started = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    for table, (columns, values) in rows.items():
        names = ", ".join(f'"{c}"' for c in columns)
        con.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})', values)
    con.execute("COMMIT")
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
        database, floor_database = workdir / "bench.db", workdir / "floor.db"
        app = create_app({"DATABASE_URL": f"sqlite:///{database}", "TOTP_REQUIRED": "none",
                          "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
                          "SESSION_COOKIE_SECURE": False})
        with app.app_context():
            upgrade()
            revision, approver = build(args.users)
            proof = authenticate_approver(approver)
            snapshot(database, floor_database)
            seconds, tx_id = approve_timed(revision, approver, proof)
            created = db.session.query(TrainingAssignment).count()
            assert created == args.users, f"expected {args.users} assignments, found {created}"
            result = app.test_cli_runner().invoke(args=["audit", "verify"])
            assert result.exit_code == 0, result.output
            from qms.documents.publish import item_of

            item_id = item_of(revision).id
            db.session.remove()
            db.engine.dispose()
        rows = fanout_rows(database, item_id, tx_id)
        assert len(rows["training_assignment"][1]) == len(rows["training_assignment_version"][1]) == args.users
        floor = floor_seconds(floor_database, rows)
    print(f"assignments_created={created}")
    print(f"fanout_users={args.users} seconds={seconds:.3f} floor_seconds={floor:.3f} ratio={seconds / floor:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
