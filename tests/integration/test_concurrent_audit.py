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
