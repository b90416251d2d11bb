"""Platform set-up an installation qualification would check."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.auth.models import User
from core.db import db, transaction
from tests.integration.stress_helpers import sqlite_writable


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite connection settings (the PostgreSQL pass checks the server instead)")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: durable at each WAL checkpoint


@pytest.mark.postgres_only
def test_postgresql_is_version_15_or_newer_and_reads_committed_data_in_a_unit_of_work(app):
    """The row locks (SELECT ... FOR UPDATE, then the checks) rely on READ COMMITTED: after waiting for a lock the
    statement sees the row as the other transaction committed it; under REPEATABLE READ it would fail instead."""
    with db.engine.connect() as conn:
        assert int(conn.exec_driver_sql("SHOW server_version_num").scalar()) >= 150000
    with transaction():
        assert db.session.execute(sa.text("SHOW transaction_isolation")).scalar() == "read committed"


def test_on_sqlite_a_unit_of_work_takes_the_write_lock_at_its_start_and_a_read_takes_none(app):
    """BEGIN IMMEDIATE for units of work (core.db): two that read and then write at once queue on busy_timeout
    instead of one failing at once with "database is locked" (SQLite cannot turn a read into a write while another
    connection writes). Reads begin deferred, so pages reading never hold writers up."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's transaction modes (PostgreSQL locks rows: see test_row_locks.py)")
    path = db.engine.url.database
    db.session.execute(sa.select(User)).all()  # a page's read transaction
    assert db.session().in_transaction() and sqlite_writable(path)
    with transaction():
        db.session.execute(sa.select(sa.literal(1)))
        assert not sqlite_writable(path)
    assert sqlite_writable(path)


def test_no_route_offers_put_patch_or_delete_and_audit_routes_are_read_only(app):
    for rule in app.url_map.iter_rules():
        assert not ({"PUT", "PATCH", "DELETE"} & rule.methods), f"{rule} accepts {rule.methods}"
        if rule.endpoint.startswith("audit."):
            assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, f"{rule} can change audit data"


def test_deleting_or_editing_audit_data_through_http_is_refused(app, client, users, login_as):
    login_as(users["system_admin"])
    for method in ("delete", "put", "patch", "post"):
        response = getattr(client, method)("/audit/")
        assert response.status_code in (400, 405), (method, response.status_code)


def test_assets_are_served_locally_without_any_cdn(app, client, users, login_as):
    response = client.get("/login")
    html = response.get_data(as_text=True)
    assert "cdn." not in html and "https://" not in html
    assert client.get("/static/attest.css").status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
