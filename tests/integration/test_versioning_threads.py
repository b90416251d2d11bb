"""Continuum's versioning manager under threads: sessions committing, rolling back, recording security events and
reading in one process at once (a threaded server: `flask run`, gunicorn `--threads`) neither fail nor lose, mix up or
leave behind versions or units of work.

Continuum keeps every session's unit of work in process-wide dictionaries keyed by connection, and each commit or
rollback sweeps them, reading the other threads' connections (upstream issue #390). A thread could thus find an entry
that another thread had just removed, or read a connection that its thread had just closed: `KeyError` or
`ResourceClosedError` in `VersioningManager.clear_connection` (about one request in 5,400 with gunicorn `--threads 4`,
docs/performance.md). core.versioning_safety makes the manager thread-safe.

Such a race needs another thread to act between two Python statements, which is rare. To make it happen every few
transactions instead of every few thousand, the test delays each read of a connection's state (`Connection.closed`,
`Connection.connection`) by a thread other than the one that opened it, as a busy machine would: the owner then has
time to close its connection meanwhile. Nothing else is changed. Without the fix every run failed, on SQLite and on
PostgreSQL (3 to 5 of the 6 threads stopped by `KeyError` or `ResourceClosedError`, five runs on each).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy_continuum import version_class, versioning_manager

from core import audit
from core.audit import AuditEvent
from core.db import db, transaction
from core.org import Site
from tests.integration.stress_helpers import audit_verifies

THREADS = 6
ROUNDS = 32  # per thread; each thread also stops after SECONDS
SECONDS = 5.0
PAGE_VIEWS = 4  # flushes without a change per page-view round
SLOW_READ = 0.0005  # seconds added to each cross-thread read of a connection's state


class _Abandoned(Exception):
    """Raised inside a unit of work to roll it back after its versioned change was flushed."""


@pytest.fixture
def cross_thread_connection_reads_are_slow(monkeypatch):
    owners: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()

    def opened(conn: Connection) -> None:
        owners[conn] = threading.get_ident()

    def slowed(prop: property) -> property:
        def read(conn: Connection):
            if owners.get(conn, threading.get_ident()) != threading.get_ident():
                time.sleep(SLOW_READ)
            return prop.fget(conn)

        return property(read)

    sa.event.listen(Engine, "engine_connect", opened)
    monkeypatch.setattr(Connection, "closed", slowed(Connection.closed))
    monkeypatch.setattr(Connection, "connection", slowed(Connection.connection))
    yield
    sa.event.remove(Engine, "engine_connect", opened)


def test_threads_committing_and_rolling_back_versioned_writes_at_once_all_succeed_with_their_own_versions(
    app, cross_thread_connection_reads_are_slow
):
    with transaction():
        seed = Site(code="SEED", name="Seed site")
        db.session.add(seed)
    seed_id = seed.id
    committed: list[str] = ["SEED"]
    abandoned: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(THREADS)

    def worker(n: int) -> BaseException | None:
        try:
            with app.app_context():
                barrier.wait(30)
                deadline = time.monotonic() + SECONDS
                for i in range(ROUNDS):
                    if time.monotonic() > deadline:
                        break
                    code = f"T{n}-{i}"
                    kind = (n + i) % 4
                    if kind == 0:  # an audited write that commits
                        with transaction():
                            db.session.add(Site(code=code, name=f"Thread {n} site {i}"))
                        committed.append(code)
                    elif kind == 1:  # a versioned change is flushed, then the unit of work fails and rolls back
                        try:
                            with transaction():
                                db.session.add(Site(code=code, name=f"Thread {n} site {i}"))
                                db.session.flush()
                                raise _Abandoned(code)
                        except _Abandoned:
                            abandoned.append(code)
                    elif kind == 2:  # a refused page: a security event in a unit of work of its own
                        with transaction():
                            audit.record_event("permission.denied", path=f"/{code}")
                        refused.append(f"/{code}")
                    else:
                        # page views that flush without writing anything (a record assigned its own value), then roll
                        # back: each opens a Continuum unit of work without taking SQLite's write lock, so several
                        # are open at once, as writers' are on PostgreSQL
                        for _ in range(PAGE_VIEWS):
                            site = db.session.get(Site, seed_id)
                            site.name = site.name
                            db.session.flush()
                            db.session.rollback()
                    db.session.remove()
        except BaseException as exc:  # reported below
            return exc
        return None

    with ThreadPoolExecutor(THREADS) as pool:
        errors = [exc for exc in pool.map(worker, range(THREADS), timeout=120) if exc is not None]
    assert errors == [], f"{len(errors)} of {THREADS} threads failed: {Counter(repr(e)[:60] for e in errors)}"
    assert len(committed) > THREADS and len(abandoned) > THREADS and len(refused) > THREADS
    db.session.expire_all()
    assert sorted(db.session.scalars(sa.select(Site.code))) == sorted(committed)
    versions = version_class(Site)
    rows = db.session.execute(sa.select(versions.code, versions.operation_type)).all()
    assert Counter(code for code, _ in rows) == Counter(committed), "one version per committed insert, none other"
    assert {operation for _, operation in rows} == {0}, "each version records an insert"
    paths = [json.loads(detail)["path"] for detail in db.session.scalars(sa.select(AuditEvent.detail))]
    assert sorted(paths) == sorted(refused), "one event per refused page"
    # Continuum drops an entry whose connection is closed lazily, at a later commit or rollback: none may be open
    assert [c for c in versioning_manager.units_of_work if not c.closed] == [], "units of work left behind"
    assert [c for c in versioning_manager.session_connection_map.values() if not c.closed] == [], "sessions left"
    audit_verifies(app)
