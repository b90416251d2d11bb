"""pytest plugin: an app on a freshly migrated database per test, clients with CSRF, and a user per role.

The schema comes only from the Alembic migrations (`flask db upgrade`), run once per test session; each test then
starts from empty tables. `ATTEST_TEST_DATABASE_URL` pointing at a PostgreSQL server makes the whole suite run there,
in a database created for the run and dropped after it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from flask import g, request_started
from sqlalchemy.engine import make_url

from core import clock
from core.auth import passwords
from core.testing.databases import postgres_database

passwords.use_fast_hashing_for_tests()

PASSWORD = "Correct-Horse-Battery-9"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres_only: needs PostgreSQL (runs in the PostgreSQL pass)")


def pytest_collection_modifyitems(config, items):
    if is_postgres():
        return
    skip = pytest.mark.skip(reason="PostgreSQL only: runs in the PostgreSQL pass of make test")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def assembled_application() -> None:
    """The packages register their permissions, roles and audit event types in init_app (docs/architecture.md):
    assemble the application once per session, so that a test of pure logic sees the matrix the running system has,
    whichever test happens to run first."""
    from app import create_app

    create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "assembly-only-secret-key-0123456789abcdef",
                "TESTING": True})


def is_postgres() -> bool:
    return (os.environ.get("ATTEST_TEST_DATABASE_URL") or "").startswith("postgresql")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    admin_url = os.environ.get("ATTEST_TEST_DATABASE_URL")
    if admin_url and admin_url.startswith("postgresql"):
        with postgres_database(admin_url) as url:
            _migrate(url)
            yield url
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'attest-test.db'}"
        _migrate(url)
        yield url


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    from app import create_app

    app = create_app(_test_config(url))
    with app.app_context():
        upgrade()
        from core.db import db

        db.engine.dispose()


def _test_config(url: str) -> dict[str, Any]:
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "SESSION_COOKIE_SECURE": False,
        "LOGIN_RATE_LIMIT": "10000 per minute",
        "TESTING": True,
    }


def reset_database() -> None:
    """PostgreSQL: empty every table (keeping the schema and its migration stamp), restart the id sequences and the
    audit chain.

    As a superuser (the CI and development servers' `postgres`), rows are deleted with triggers off for this
    transaction (session_replication_role = replica: neither the audit tables' append-only triggers nor the foreign
    key checks fire): about 10 ms. TRUNCATE of the 66 tables, the fallback for other accounts, takes 0.5 to 1 s (a new
    file per table), which was most of the PostgreSQL pass's time."""
    from core.db import db

    with db.engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            return  # SQLite tests start from a fresh copy of the migrated template
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        if conn.exec_driver_sql("SHOW is_superuser").scalar() == "on":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql("; ".join(f'DELETE FROM "{name}"' for name in tables))
            sequences = conn.exec_driver_sql(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences "
                "WHERE schemaname = current_schema()").scalars().all()
            if sequences:
                conn.exec_driver_sql("SELECT " + ", ".join(f"setval('{name}', 1, false)" for name in sequences))
        else:
            # TRUNCATE is not a row DELETE: the append-only triggers of the audit tables do not fire
            quoted = ", ".join(f'"{name}"' for name in tables)
            conn.exec_driver_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
        conn.exec_driver_sql("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def app(database_url, app_config, tmp_path):
    from app import create_app

    if database_url.startswith("sqlite"):
        # a copy of the migrated template per test: faster than emptying tables, and the audit triggers (which
        # refuse DELETE on audit tables) stay in place
        copy = tmp_path / "attest.db"
        shutil.copyfile(make_url(database_url).database, copy)
        database_url = f"sqlite:///{copy}"
    application = create_app({**_test_config(database_url), **app_config})
    # The test keeps an application context open (for db access in the test body), and Flask reuses it for every
    # request; give each request a fresh `g` (Flask-Login's user, Flask-WTF's token) as in production.
    request_started.connect(_fresh_g, application, weak=False)
    with application.app_context():
        reset_database()
        yield application
        from core.db import db

        db.session.remove()
        db.engine.dispose()
    clock.freeze(None)


def _fresh_g(sender, **extra) -> None:
    g.__dict__.clear()


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client, url: str = "/login") -> str:
    html = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def post_form(client, url: str, data: dict[str, Any], *, token_from: str | None = None, **kwargs):
    """POST like a browser: fetch the form page for its CSRF token first."""
    token = csrf_token(client, token_from or url)
    return client.post(url, data={**data, "csrf_token": token}, **kwargs)


@pytest.fixture
def make_user(app):
    """Create a user through the service layer, committed like the real application does."""
    from core.auth import services
    from core.db import transaction

    counter = iter(range(1, 10_000))

    def factory(username: str | None = None, *, roles=(), password: str = PASSWORD, full_name: str | None = None,
                totp: bool | None = None, must_change_password: bool = False, **fields):
        n = next(counter)
        username = username or f"user{n}"
        with transaction():
            user, _ = services.create_user(username=username, full_name=full_name or f"Test User {n}",
                                           email=f"{username}@example.com", roles=set(roles), password=password,
                                           must_change_password=must_change_password, **fields)
            if totp is None:
                totp = services.totp_required(user)
            if totp:
                user.security.totp_secret = pyotp.random_base32()
                user.security.totp_enrolled_at = clock.now_utc()
        return user

    return factory


ROLE_CODES = ("system_admin", "qa_approver", "document_author", "training_coordinator", "supervisor", "operator",
              "validation_engineer", "auditor")


@pytest.fixture
def users(make_user):
    """One user per role, keyed by role code (username = role code with '_' -> '.')."""
    return {code: make_user(code.replace("_", "."), roles={code}, full_name=f"{code.replace('_', ' ').title()}")
            for code in ROLE_CODES}


def totp_code(user) -> str:
    """A valid code for the user's next unused time step (advances the frozen clock when needed)."""
    from core.db import db

    db.session.refresh(user.security)
    totp = pyotp.TOTP(user.security.totp_secret)
    now = clock.now_utc()
    last = user.security.totp_last_step
    if last is not None and totp.timecode(now) <= last:
        now = now + timedelta(seconds=30 * (last - totp.timecode(now) + 1))
        clock.freeze(now)
    elif clock._frozen is None:
        clock.freeze(now)
    return totp.at(now)


def login(client, user, password: str = PASSWORD):
    """Log in through the real pages (password, then TOTP when enrolled). Returns the final response."""
    response = post_form(client, "/login", {"username": user.username, "password": password})
    if response.status_code == 302 and response.headers["Location"].endswith("/login/code"):
        response = post_form(client, "/login/code", {"code": totp_code(user)})
    return response


@pytest.fixture
def admin(make_user):
    """A system administrator (accounts and configuration; signs nothing)."""
    return make_user("admin.one", roles={"system_admin"}, full_name="Ada Admin")


@pytest.fixture
def admin_client(app, admin):
    """A test client logged in as `admin`."""
    c = app.test_client()
    assert login(c, admin).status_code == 302
    return c


@pytest.fixture
def login_as(client):
    def do(user, password: str = PASSWORD):
        response = login(client, user, password)
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return client

    return do
