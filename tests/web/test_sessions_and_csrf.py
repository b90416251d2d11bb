"""Login sessions (revocation of copied cookies, fixation, idle timeout, absolute lifetime), CSRF protection,
security headers and cookie flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import clock
from core import config as config_module
from core.testing.pages import alerts, events, fresh
from testkit.plugin import PASSWORD, csrf_token, login, post_form

COOKIE = "attest_session"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)











def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def cookie_value(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie is not None else None


def client_with_cookie(app, value: str):
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def advance(**delta) -> None:
    clock.freeze(clock.now_utc() + timedelta(**delta))


@pytest.fixture
def auditor(make_user):
    return make_user("alex", roles={"auditor"}, full_name="Alex Auditor")



# --- CSRF ------------------------------------------------------------------------------------------------------------


def test_logout_without_a_csrf_token_is_refused_and_the_session_continues(client, auditor):
    assert login(client, auditor).status_code == 302
    response = client.post("/logout")
    assert response.status_code == 400
    assert "Form expired or not sent from Attest" in response.get_data(as_text=True)
    assert is_logged_in(client)
    assert events("logout") == []


def test_logout_with_a_wrong_csrf_token_is_refused(client, auditor):
    assert login(client, auditor).status_code == 302
    response = client.post("/logout", data={"csrf_token": "forged-token"})
    assert response.status_code == 400
    assert is_logged_in(client)


def test_admin_action_without_a_csrf_token_changes_nothing(client, admin, auditor):
    assert login(client, admin).status_code == 302
    response = client.post(f"/admin/users/{auditor.id}/deactivate", data={"reason": "Cross-site request"})
    assert response.status_code == 400
    assert fresh(auditor).active is True
    assert events("user.deactivated") == []


def test_admin_action_with_a_token_of_another_session_is_refused(app, client, admin, auditor):
    assert login(client, admin).status_code == 302
    attacker = app.test_client()
    foreign_token = csrf_token(attacker, "/login")
    response = client.post(f"/admin/users/{auditor.id}/deactivate",
                           data={"reason": "Cross-site request", "csrf_token": foreign_token})
    assert response.status_code == 400
    assert fresh(auditor).active is True


def test_login_form_needs_a_csrf_token(client, auditor):
    response = client.post("/login", data={"username": "alex", "password": PASSWORD})
    assert response.status_code == 400
    assert events("login.success") == []


def test_logout_ends_the_session(client, auditor):
    assert login(client, auditor).status_code == 302
    response = post_form(client, "/logout", {}, token_from="/account")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "You have been logged out." in alerts(client.get("/login"))
    assert not is_logged_in(client)
    assert len(events("logout", auditor)) == 1


# --- copied cookies, fixation ----------------------------------------------------------------------------------------


def test_a_session_cookie_copied_before_logout_no_longer_authenticates(app, client, auditor):
    assert login(client, auditor).status_code == 302
    assert is_logged_in(client)
    stolen = cookie_value(client)
    assert is_logged_in(client_with_cookie(app, stolen))  # the copy works while the session is live

    assert post_form(client, "/logout", {}, token_from="/account").status_code == 302
    replay = client_with_cookie(app, stolen)
    response = replay.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert replay.get("/admin/users/").status_code == 302


def test_a_session_cookie_copied_before_a_password_change_stops_working(app, client, auditor):
    assert login(client, auditor).status_code == 302
    stolen = cookie_value(client)
    response = post_form(client, "/account/password", {"current_password": PASSWORD,
                                                       "new_password": "Brand-New-Passphrase-42",
                                                       "confirm_password": "Brand-New-Passphrase-42"})
    assert response.status_code == 302
    assert is_logged_in(client)  # the session that changed the password continues
    assert not is_logged_in(client_with_cookie(app, stolen))


def test_a_new_login_ends_the_users_older_sessions(app, client, auditor):
    assert login(client, auditor).status_code == 302
    second = app.test_client()
    assert login(second, auditor).status_code == 302
    assert is_logged_in(second)
    assert not is_logged_in(client)


def test_the_session_cookie_changes_at_login(app, client, auditor):
    client.get("/login")
    before = cookie_value(client)
    assert before is not None
    assert login(client, auditor).status_code == 302
    after = cookie_value(client)
    assert after != before
    # a cookie planted before login (session fixation) does not become a logged-in session
    planted = client_with_cookie(app, before)
    assert not is_logged_in(planted)
    assert is_logged_in(client)


# --- idle timeout and absolute lifetime ------------------------------------------------------------------------------


def test_session_ends_after_the_idle_timeout_with_a_message_naming_inactivity(client, auditor):
    clock.freeze(START)
    assert login(client, auditor).status_code == 302
    advance(minutes=14)
    assert is_logged_in(client)  # activity within 15 minutes keeps the session alive
    advance(minutes=14)
    assert is_logged_in(client)  # ... and restarts the idle period
    advance(minutes=15, seconds=1)
    response = client.get("/admin/users/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    page = client.get(response.headers["Location"])
    assert "Your session ended after 15 minutes without activity. Please log in again." in alerts(page)
    assert not is_logged_in(client)
    assert len(events("session.expired", auditor)) == 1


def test_a_session_idle_for_exactly_fifteen_minutes_is_still_valid(client, auditor):
    clock.freeze(START)
    assert login(client, auditor).status_code == 302
    advance(minutes=15)
    assert is_logged_in(client)
    advance(minutes=15, seconds=1)
    assert not is_logged_in(client)


@pytest.mark.parametrize("app_config", [{"SESSION_IDLE_MINUTES": 5}])
def test_idle_timeout_can_be_shortened(client, auditor, app_config):
    clock.freeze(START)
    assert login(client, auditor).status_code == 302
    advance(minutes=5, seconds=1)
    response = client.get("/")
    assert response.status_code == 302
    assert "after 5 minutes without activity" in " ".join(alerts(client.get(response.headers["Location"])))


def test_session_ends_at_its_maximum_lifetime_even_when_active(client, auditor):
    clock.freeze(START)
    assert login(client, auditor).status_code == 302
    while clock.now_utc() - START < timedelta(hours=12) - timedelta(minutes=10):
        advance(minutes=10)
        assert is_logged_in(client), clock.now_utc()
    advance(minutes=10, seconds=1)
    assert clock.now_utc() - START > timedelta(hours=12)
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    page = client.get(response.headers["Location"])
    assert "Your session reached its maximum length of 12 hours. Please log in again." in alerts(page)
    assert not is_logged_in(client)


def test_an_expired_session_cookie_cannot_be_reused(app, client, auditor):
    clock.freeze(START)
    assert login(client, auditor).status_code == 302
    stolen = cookie_value(client)
    advance(minutes=16)
    assert not is_logged_in(client)
    assert not is_logged_in(client_with_cookie(app, stolen))


# --- headers and cookie flags ----------------------------------------------------------------------------------------


def test_pages_carry_security_headers_and_are_not_cached(client, auditor):
    assert login(client, auditor).status_code == 302
    for response in (client.get("/"), client.get("/login"), client.get("/audit/")):
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp or headers.get("X-Frame-Options") in ("DENY", "SAMEORIGIN")
        assert headers.get("X-Frame-Options") == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "no-store" in headers["Cache-Control"]


def test_error_pages_carry_security_headers_too(client, make_user):
    operator = make_user("otto", roles={"operator"})
    assert login(client, operator).status_code == 302
    response = client.get("/admin/users/")
    assert response.status_code == 403
    assert "Content-Security-Policy" in response.headers
    assert "no-store" in response.headers["Cache-Control"]


def test_session_cookie_is_httponly_and_samesite_lax(client, auditor):
    response = login(client, auditor)
    set_cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert set_cookie, response.headers
    flags = [part.strip().lower() for part in set_cookie[-1].split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    cookie = client.get_cookie(COOKIE)
    assert cookie.http_only and cookie.same_site == "Lax"


def test_session_cookie_is_https_only_by_default(tmp_path, monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("ATTEST_"):
            monkeypatch.delenv(name)
    config = config_module.load(str(tmp_path))
    assert config["ATTEST_SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["ATTEST_SESSION_IDLE_MINUTES"] == 15
    assert config["ATTEST_SESSION_MAX_HOURS"] == 12


def test_a_secure_cookie_is_marked_secure(database_url):
    from app import create_app
    from testkit.plugin import _test_config

    secure_app = create_app({**_test_config(database_url), "SESSION_COOKIE_SECURE": True})
    response = secure_app.test_client().get("/login", base_url="https://localhost")
    set_cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert set_cookie and "secure" in [p.strip().lower() for p in set_cookie[-1].split(";")]
