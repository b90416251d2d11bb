"""Platform set-up an installation qualification would check."""

from __future__ import annotations

import pytest

from core.db import db


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite connection settings (the PostgreSQL pass checks the server instead)")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


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
