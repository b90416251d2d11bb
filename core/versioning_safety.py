"""SQLAlchemy-Continuum's versioning manager made safe for threads (upstream issue #390, open in Continuum 2.0.0).

Continuum has one process-wide manager (`sqlalchemy_continuum.versioning_manager`) that keeps each session's unit of
work in two plain dictionaries: `units_of_work` (connection -> UnitOfWork) and `session_connection_map` (session ->
connection). Every commit and rollback (`clear`, `clear_connection`) then sweeps them without a lock, dropping any
entry whose connection is closed or shares the pool connection of the one just ended, and doing so it reads the
connections of the other threads. Under threads (`flask run`, gunicorn `--threads`, the concurrency tests) a sweep
finds an entry that its thread removed meanwhile (`KeyError`), or reads a connection that its thread closed meanwhile
(`ResourceClosedError`): the request fails with a 500 (docs/performance.md, finding 1). Upstream's proposed fix
(pull request #391, not released) moves the state onto `connection.info`.

`make_thread_safe()` keeps Continuum's data and behaviour and turns its manager into a `ThreadSafeVersioningManager`:
one process-wide lock around every use of the two dictionaries, and sweeps that read another thread's connection
without ever raising or reconnecting (a connection closed meanwhile counts as closed). The lock is never held while
waiting for the database: `session.connection()` (which may wait for SQLite's write lock) runs before taking it.
tests/integration/test_versioning_threads.py reproduces the race and proves the fix on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import PendingRollbackError, ResourceClosedError
from sqlalchemy_continuum.manager import VersioningManager


def _pool_connection(connection: Connection) -> Any | None:
    """The pool connection `connection` holds, or None while it holds none (closed, or invalidated).

    `connection` may belong to another thread, which can close it at any moment: Continuum's own test
    (`connection.closed`, then `connection.connection`) raises ResourceClosedError when that happens in between, and on
    an invalidated connection `.connection` would even reconnect it from this thread.
    """
    if connection.closed or connection.invalidated:
        return None
    try:
        return connection.connection
    except (ResourceClosedError, PendingRollbackError):  # closed or invalidated by its thread just now
        return None


class ThreadSafeVersioningManager(VersioningManager):
    """Continuum's VersioningManager with its shared dictionaries behind one lock (see the module docstring).

    Each method does what Continuum 2.0.0's does, in the same order, except that it holds the lock, copies a
    dictionary before looping over it and reads other threads' connections through `_pool_connection`. One deliberate
    difference: when `_uow_from_conn` meets a clone of a tracked connection, Continuum calls
    `self.unit_of_work(conn.session)`, which raises AttributeError (a Connection has no `session`); this returns the
    unit of work of the connection it is a clone of, as `track_cloned_connections` does.
    """

    _lock = threading.RLock()  # one per process, like the manager

    def unit_of_work(self, session: sa.orm.Session) -> Any:
        conn = session.connection()  # may begin a transaction and wait for the database: outside the lock
        with self._lock:
            if conn not in self.session_connection_map.values():
                self.session_connection_map[session] = conn
            uow = self.units_of_work.get(conn)
            if uow is None:
                uow = self.units_of_work[conn] = self.uow_class(self)
            return uow

    def _uow_from_conn(self, conn: Connection) -> Any:
        with self._lock:
            uow = self.units_of_work.get(conn)
            if uow is None:
                uow = self.units_of_work.get(conn.engine)
            if uow is not None:
                return uow
            mine = _pool_connection(conn)
            if mine is not None:
                for connection, candidate in list(self.units_of_work.items()):
                    if _pool_connection(connection) is mine:  # a clone of a tracked connection
                        return candidate
        raise KeyError(conn.engine)

    def clear(self, session: sa.orm.Session) -> None:
        if session.in_nested_transaction():
            return
        with self._lock:
            conn = self.session_connection_map.pop(session, None)
            if conn is None:
                return
            uow = self.units_of_work.pop(conn, None)
            if uow is not None:
                uow.reset(session)
            self._drop_ended(conn, session)

    def clear_connection(self, conn: Connection) -> None:
        with self._lock:
            uow = self.units_of_work.pop(conn, None)
            if uow is not None:
                uow.reset()
            for session, connection in list(self.session_connection_map.items()):
                if connection is conn:
                    del self.session_connection_map[session]
            self._drop_ended(conn)

    def _drop_ended(self, conn: Connection, *reset_args: Any) -> None:
        """Drop the units of work whose connection is closed or is a clone of `conn` (Continuum's sweep).

        Caller holds the lock. Another thread's open connection is never matched, even one invalidated and not yet
        rolled back (its thread's rollback removes it): a pool connection belongs to one checkout, so only `conn` and
        its clones share it.
        """
        mine = _pool_connection(conn)
        for connection, uow in list(self.units_of_work.items()):
            if connection.closed or (mine is not None and _pool_connection(connection) is mine):
                del self.units_of_work[connection]
                uow.reset(*reset_args)

    def track_cloned_connections(self, c: Connection, opt: Any) -> None:
        with self._lock:
            if c in self.units_of_work:
                return
            mine = _pool_connection(c)
            if mine is None:
                return
            for connection, uow in list(self.units_of_work.items()):
                if _pool_connection(connection) is mine:  # the same pool connection: c is a clone
                    self.units_of_work[c] = uow


def make_thread_safe(manager: VersioningManager) -> None:
    """Turn Continuum's manager into a ThreadSafeVersioningManager, in place (everything refers to that one object).

    Must run before `make_versioned`: the listeners it registers are bound methods taken from the manager's listener
    tables, which are rebuilt here.
    """
    if isinstance(manager, ThreadSafeVersioningManager):
        return
    if type(manager) is not VersioningManager:
        raise TypeError(f"expected Continuum's VersioningManager, got {type(manager).__name__}")
    if sa.event.contains(sa.orm.session.Session, "after_commit", manager.session_listeners["after_commit"]):
        raise RuntimeError("make_thread_safe() must run before make_versioned()")
    manager.__class__ = ThreadSafeVersioningManager
    for table in ("session_listeners", "mapper_listeners"):
        setattr(manager, table, {event: getattr(manager, fn.__name__) for event, fn in getattr(manager, table).items()})
