"""Simulating a database superuser, for tamper-detection tests and synthetic benchmark data only.

The application's audit tables are append-only through database triggers (core.audit.guards); only someone with
superuser rights can get past them, and the hash chain is what detects what they change. These helpers play that
person: on PostgreSQL by switching triggers off for one transaction (needs a superuser connection), on SQLite by
dropping the guard triggers inside the transaction and recreating them before it commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def superuser(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            yield conn
            return
        triggers = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%append-only%'").all()
        for name, _sql in triggers:
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        yield conn
        for _name, sql in triggers:
            conn.exec_driver_sql(sql)
