"""Benchmark of `core.audit.verify()` over a database holding N sealed audit transactions (default 100,000).

Building N transactions through the ORM would take minutes (Continuum writes ~4k version rows/s), so only the first
transaction goes through the application: a user and a few sites created in `core.db.transaction()`, versioned by
Continuum and sealed at commit. The other N-1 are written in bulk with SQLAlchemy Core, the way the application
would have written them: mostly updates of one site each (one `core_site_version` row, operation_type 1, with a
reason for change), every tenth a security event (one `audit_event` row). They are then sealed as `_seal` does: the
canonical lines come from the rows read back raw from the database and go through core.audit's own `_tx_repr`,
`_version_repr`, `_event_repr` and `chain_hash`; the live `core_site` rows are set to their latest versions. A
benchmark of a failing verification is meaningless, so the script stops unless `verify()` reports the audit trail
intact.

Only `verify()` is timed (best of --runs). The last line printed is `audit_verify_tx_per_s=<int>`.

    .venv/bin/python bench/audit_verify.py [--transactions N] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.testing.databases import postgres_database  # noqa: E402 (after the path set-up above)

SITES = 25
EVENT_EVERY = 10  # every tenth bulk transaction is a security event instead of a site update
BATCH = 5_000
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _config(url: str) -> dict[str, Any]:
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        "SESSION_COOKIE_SECURE": False,
    }


@contextmanager
def scratch_database(admin_url: str | None) -> Iterator[str]:
    """A fresh temporary SQLite file, or a scratch PostgreSQL database created on `admin_url` and dropped after."""
    if admin_url is None or not admin_url.startswith("postgresql"):
        if admin_url is not None:
            raise SystemExit("--database-url must be a PostgreSQL URL (SQLite uses a temporary file by default)")
        with tempfile.TemporaryDirectory(prefix="attest-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    with postgres_database(admin_url, prefix="attest_bench") as url:
        yield url


def create_through_application() -> tuple[int, list[int]]:
    """The first transaction, made by the real code path: returns the user id and the site ids."""
    from core.auth import services
    from core.db import transaction
    from core.org import Site

    with transaction() as session:
        user, _ = services.create_user(username="bench.admin", full_name="Bench Administrator",
                                       email="bench.admin@example.com", roles={"system_admin"},
                                       password="Correct-Horse-Battery-9", must_change_password=False)
        sites = [Site(code=f"S{n:02d}", name=f"Site {n:02d}", timezone="Europe/Zurich") for n in range(SITES)]
        session.add_all(sites)
        session.flush()
    return user.id, [s.id for s in sites]


def bulk_write(conn: sa.Connection, total: int, user_id: int, site_ids: list[int]) -> int:
    """Write transactions 2..total (rows only, not yet sealed). Returns the id of the first one."""
    from sqlalchemy_continuum import version_class

    from core.audit import AuditChainHead, AuditEvent, AuditTransaction
    from core.auth.models import User
    from core.org import Site

    tx_table = AuditTransaction.__table__
    event_table = AuditEvent.__table__
    site_version = version_class(Site).__table__
    head_seq = conn.execute(sa.select(AuditChainHead.seq).where(AuditChainHead.id == 1)).scalar_one()
    first_id = conn.execute(sa.select(sa.func.max(tx_table.c.id))).scalar_one() + 1
    username, printed_name = conn.execute(sa.select(User.username, User.full_name).where(User.id == user_id)).one()
    sites = {row.id: row for row in conn.execute(sa.select(Site.__table__)).all()}

    txs: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def flush() -> None:
        if txs:
            conn.execute(sa.insert(tx_table), txs)
        if versions:
            conn.execute(sa.insert(site_version), versions)
        if events:
            conn.execute(sa.insert(event_table), events)
        txs.clear()
        versions.clear()
        events.clear()

    latest: dict[int, dict[str, Any]] = {}
    for n in range(total - 1):
        tx_id = first_id + n
        is_event = n % EVENT_EVERY == EVENT_EVERY - 1
        tx = {"id": tx_id, "issued_at": START + timedelta(seconds=7 * n, microseconds=n % 1_000_000),
              "user_id": user_id, "username": username, "printed_name": printed_name,
              "remote_addr": f"10.0.{n % 7}.{n % 250 + 1}", "channel": "web", "chain_seq": head_seq + 1 + n,
              "reason": None, "record_types": None}
        if is_event:
            events.append({"transaction_id": tx_id, "event_type": "login.success", "subject_user_id": user_id,
                           "subject_username": username, "detail": '{"method": "password+totp"}'})
        else:
            site = sites[site_ids[n % len(site_ids)]]
            row = {"id": site.id, "code": site.code, "name": f"Site {site.code[1:]} (revision {n})",
                   "timezone": "Europe/Zurich" if n % 3 else "Europe/Berlin", "transaction_id": tx_id,
                   "operation_type": 1}
            versions.append(row)
            latest[site.id] = row
            tx["reason"] = f"Site name corrected (change request CR-{n:06d})"
            tx["record_types"] = ",core_site,"
        txs.append(tx)
        if len(txs) >= BATCH:
            flush()
    flush()
    site_table = Site.__table__
    for site_id, row in latest.items():
        conn.execute(sa.update(site_table).where(site_table.c.id == site_id)
                     .values(name=row["name"], timezone=row["timezone"]))
    if conn.dialect.name == "postgresql":  # explicit ids: keep the sequence ahead of them for later application writes
        conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('audit_transaction', 'id'), "
                             "(SELECT max(id) FROM audit_transaction))")
    return first_id


def seal_bulk(conn: sa.Connection, first_id: int) -> None:
    """Seal the bulk transactions in chain order from their rows read back raw, exactly as `_seal` canonicalises."""
    from core import audit

    parts: dict[int, list[str]] = defaultdict(list)
    for vt in audit.version_tables():
        rows = conn.execute(sa.text(f"SELECT {', '.join(map(audit._q, vt.columns))} FROM {audit._q(vt.name)} "
                                    f"WHERE transaction_id >= :first"), {"first": first_id})
        for row in rows:
            parts[row[vt.tx_index]].append(audit._version_repr(vt.name, row))
    for row in conn.execute(sa.text(f"SELECT {', '.join(audit.EVENT_COLUMNS)} FROM audit_event "
                                    f"WHERE transaction_id >= :first"), {"first": first_id}):
        parts[row[1]].append(audit._event_repr(row))
    head = audit.AuditChainHead
    prev = conn.execute(sa.select(head.hash).where(head.id == 1)).scalar_one()
    tx_rows = conn.execute(sa.text(f"SELECT {', '.join(audit.TX_COLUMNS)} FROM audit_transaction "
                                   f"WHERE id >= :first ORDER BY chain_seq"), {"first": first_id}).all()
    tx_table = audit.AuditTransaction.__table__
    seal = (sa.update(tx_table).where(tx_table.c.id == sa.bindparam("tx_id"))
            .values(prev_hash=sa.bindparam("prev"), hash=sa.bindparam("digest")))
    batch: list[dict[str, Any]] = []
    seq = None
    for row in tx_rows:
        digest = audit.chain_hash(prev, [audit._tx_repr(row), *parts.pop(row[0], [])])
        batch.append({"tx_id": row[0], "prev": prev, "digest": digest})
        prev, seq = digest, row[1]
        if len(batch) >= BATCH:
            conn.execute(seal, batch)
            batch.clear()
    if batch:
        conn.execute(seal, batch)
    assert not parts, f"rows of unknown transactions: {sorted(parts)[:5]}"
    conn.execute(sa.update(head.__table__).where(head.id == 1).values(seq=seq, hash=prev))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=100_000, help="audit transactions to build (>= 2)")
    parser.add_argument("--database-url", help="PostgreSQL server URL; a scratch database is created on it")
    parser.add_argument("--runs", type=int, default=3, help="timed verify() runs; the best one counts")
    args = parser.parse_args(argv)
    if args.transactions < 2:
        parser.error("--transactions must be at least 2")

    from flask_migrate import upgrade

    from app import create_app
    from core import audit
    from core.db import db
    from core.testing.tamper import superuser

    with scratch_database(args.database_url) as url:
        app = create_app(_config(url))
        with app.app_context():
            try:
                upgrade()
                started = time.perf_counter()
                user_id, site_ids = create_through_application()
                # synthetic history is written as a bulk loader: the chain head jumps ahead in one step, which the
                # append-only triggers allow only to a superuser session
                with superuser(db.engine) as conn:
                    first_id = bulk_write(conn, args.transactions, user_id, site_ids)
                    seal_bulk(conn, first_id)
                built = time.perf_counter() - started
                db.session.remove()
                with db.engine.connect() as conn:
                    rows = {name: conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                            for name in ("audit_transaction", "core_site_version", "audit_event", "core_site")}
                print(f"database={db.engine.dialect.name}")
                print(f"build_seconds={built:.2f}")
                print("rows=" + ",".join(f"{name}:{count}" for name, count in rows.items()))

                best = None
                for run in range(args.runs):
                    t0 = time.perf_counter()
                    result = audit.verify(db.engine)
                    elapsed = time.perf_counter() - t0
                    if not result.ok:
                        raise SystemExit(f"verify() failed, benchmark void: {result.chain_error} "
                                         f"{result.record_problems[:3]}")
                    if result.transactions < args.transactions:
                        raise SystemExit(f"verify() saw {result.transactions} transactions, expected "
                                         f"{args.transactions}")
                    print(f"verify_run_{run + 1}_seconds={elapsed:.3f} transactions={result.transactions} "
                          f"version_rows={result.version_rows} records={result.records}")
                    best = elapsed if best is None else min(best, elapsed)
                print(f"verify_best_seconds={best:.3f}")
                print(f"audit_verify_tx_per_s={int(result.transactions / best)}")
            finally:
                db.session.remove()
                db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
