"""Several app servers writing at once still produce one unbroken audit chain (sealing takes the chain-head lock)."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from core.audit import AuditTransaction
from core.db import db, transaction
from core.org import Site

THREADS = 6
PER_THREAD = 8


def test_concurrent_writers_produce_one_contiguous_verifiable_chain(app):
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def writer(n: int) -> None:
        try:
            with app.app_context():
                barrier.wait()
                for i in range(PER_THREAD):
                    with transaction():
                        db.session.add(Site(code=f"T{n}-{i}", name=f"Thread {n} site {i}"))
                db.session.remove()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    seqs = db.session.scalars(sa.select(AuditTransaction.chain_seq).order_by(AuditTransaction.chain_seq)).all()
    assert seqs == list(range(1, THREADS * PER_THREAD + 1))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Site)) == THREADS * PER_THREAD
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_verify_while_another_server_commits_checks_one_consistent_snapshot(app, make_user):
    """`flask audit verify` reads the version tables, then the events, then the chain, then the live records. A
    transaction committed in between must be wholly in or wholly out of what it checks, or an intact trail is reported
    broken: PostgreSQL reads in one REPEATABLE READ snapshot (READ COMMITTED would see the new chain entry without
    its version rows), SQLite's read transaction keeps its WAL snapshot. The commit is made deterministically
    between the version tables and the chain."""
    from core import audit

    make_user("vera.verify", roles={"operator"})
    committed: list[int] = []

    def commit_from_another_server() -> None:
        with app.app_context():
            with transaction():
                site = Site(code="MID", name="Created while verify ran")
                db.session.add(site)
            committed.append(site.id)
            db.session.remove()

    def between_reads(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM audit_transaction ORDER BY chain_seq" in statement and not committed:
            writer = threading.Thread(target=commit_from_another_server)
            writer.start()
            writer.join(30)

    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction))
    db.session.rollback()
    sa.event.listen(db.engine, "before_cursor_execute", between_reads)
    try:
        during = audit.verify()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", between_reads)

    assert committed, "the other server's transaction did not commit while verify ran"
    assert during.ok, (during.chain_error, during.record_problems)
    assert during.transactions == before, "verify saw part of a transaction committed after it started"
    after = audit.verify()
    assert after.ok and after.transactions == before + 1
