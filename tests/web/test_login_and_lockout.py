"""Login, lockout after repeated failures, administrator unlock, deactivation and login rate limiting."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote, urlsplit

import pyotp
import pytest

from core import clock
from core.audit import AuditTransaction
from core.auth import services
from core.auth.services import GENERIC_LOGIN_FAILURE
from core.db import db, transaction
from core.testing.pages import alerts, events, fresh
from testkit.plugin import PASSWORD, csrf_token, login, post_form, totp_code


def try_password(client, username: str, password: str):
    return post_form(client, "/login", {"username": username, "password": password})


def lock_out(client, user, times: int = 5) -> None:
    for _ in range(times):
        response = try_password(client, user.username, "not-the-password-at-all")
        assert response.status_code == 401


def stays_on_this_site(location: str) -> bool:
    """Whether a browser would stay on this host: a path, not '//host', and no backslash or control character
    (browsers read '/\\host' as '//host')."""
    parts = urlsplit(location)
    return (not parts.scheme and not parts.netloc and location.startswith("/") and not location.startswith("//")
            and "\\" not in location and not any(ord(c) < 32 for c in location))


def wrong_code(user) -> str:
    """A six-digit code that is not valid for the user's authenticator right now (nor one step either side)."""
    totp = pyotp.TOTP(fresh(user).security.totp_secret)
    now = clock.now_utc()
    valid = {totp.at(now + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    return next(c for c in ("123456", "654321", "111111", "222222") if c not in valid)


def log_out(client) -> None:
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/account")}).status_code == 302


def is_logged_in(client) -> bool:
    response = client.get("/")
    return response.status_code == 200




def test_successful_login_lands_on_the_home_page(client, make_user):
    user = make_user("olga", roles={"auditor"}, full_name="Olga Auditor")
    response = login(client, user)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Welcome, Olga Auditor" in home.get_data(as_text=True)
    assert len(events("login.success", user)) == 1


def test_login_returns_to_the_page_that_asked_for_it(client, make_user):
    make_user("olga", roles={"auditor"})
    response = client.get("/audit/")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=%2Faudit%2F"
    response = post_form(client, "/login?next=%2Faudit%2F", {"username": "olga", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/audit/"


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "/\\evil.example/", "\\\\evil.example", "/\t/evil.example",
    "javascript:alert(1)",
])
def test_login_never_sends_the_user_to_another_site(client, make_user, target):
    make_user("olga", roles={"auditor"})
    response = post_form(client, f"/login?next={quote(target, safe='')}", {"username": "olga", "password": PASSWORD},
                         token_from="/login")
    assert response.status_code == 302
    assert stays_on_this_site(response.headers["Location"])


def test_login_with_the_code_step_never_sends_the_user_to_another_site(client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    post_form(client, "/login?next=%2F%2Fevil.example%2F", {"username": "quinn", "password": PASSWORD},
              token_from="/login")
    response = post_form(client, "/login/code", {"code": totp_code(user)})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_login_with_a_signing_role_asks_for_the_code_and_then_lands_on_home(client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    first = try_password(client, "quinn", PASSWORD)
    assert first.status_code == 302 and first.headers["Location"].endswith("/login/code")
    assert not is_logged_in(client)
    response = login(client, user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert is_logged_in(client)


def test_wrong_password_and_unknown_username_show_the_same_message(client, make_user):
    make_user("known.user", roles={"auditor"})
    wrong_password = try_password(client, "known.user", "Wrong-Password-123")
    unknown_user = try_password(client, "nobody.here", "Wrong-Password-123")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert alerts(wrong_password) == alerts(unknown_user) == [GENERIC_LOGIN_FAILURE]
    assert not is_logged_in(client)
    failures = events("login.failure")
    assert [e.subject_username for e in failures] == ["known.user", "nobody.here"]


def test_account_locks_after_five_failed_passwords(client, make_user):
    user = make_user("lena", roles={"auditor"})
    lock_out(client, user, 4)
    assert fresh(user).security.locked_at is None
    assert events("account.locked", user) == []
    lock_out(client, user, 1)
    assert fresh(user).security.locked_at is not None
    locked = events("account.locked", user)
    assert len(locked) == 1
    assert '"failed_attempts": 5' in locked[0].detail

    refused = try_password(client, "lena", PASSWORD)
    assert refused.status_code == 401
    assert alerts(refused) == [GENERIC_LOGIN_FAILURE]
    assert not is_logged_in(client)


def test_lockout_counts_only_consecutive_failures(client, make_user):
    user = make_user("carl", roles={"auditor"})
    lock_out(client, user, 4)
    assert login(client, user).status_code == 302
    log_out(client)
    lock_out(client, user, 4)
    assert fresh(user).security.locked_at is None
    assert login(client, user).status_code == 302


@pytest.mark.parametrize("app_config", [{"LOCKOUT_THRESHOLD": 3}])
def test_lockout_threshold_follows_the_configuration(client, make_user, app_config):
    user = make_user("tina", roles={"auditor"})
    lock_out(client, user, 3)
    assert fresh(user).security.locked_at is not None
    assert try_password(client, "tina", PASSWORD).status_code == 401


def test_failed_second_factor_codes_count_toward_lockout(client, make_user):
    user = make_user("sam", roles={"qa_approver"})
    for _ in range(5):
        assert try_password(client, "sam", PASSWORD).status_code == 302
        post_form(client, "/login/code", {"code": wrong_code(user)})
    assert fresh(user).security.locked_at is not None
    assert len(events("account.locked", user)) == 1
    assert try_password(client, "sam", PASSWORD).status_code == 401


def test_a_locked_users_existing_session_stops_working(app, client, make_user):
    user = make_user("ivan", roles={"auditor"})
    assert login(client, user).status_code == 302
    assert is_logged_in(client)
    attacker = app.test_client()
    lock_out(attacker, user)
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_unlocking_does_not_revive_the_session_that_was_open_when_the_account_locked(app, client, make_user,
                                                                                     admin_client):
    user = make_user("ivan", roles={"auditor"})
    assert login(client, user).status_code == 302
    lock_out(app.test_client(), user)
    assert not is_logged_in(client)
    response = post_form(admin_client, f"/admin/users/{user.id}/unlock", {"reason": "Confirmed with the user"},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 302
    assert fresh(user).security.locked_at is None
    assert not is_logged_in(client)  # a locked account's sessions are ended, not suspended
    assert login(client, user).status_code == 302
    assert is_logged_in(client)


def test_only_an_administrator_unlocks_and_a_reason_is_required(app, client, make_user, admin, admin_client):
    user = make_user("ulla", roles={"auditor"})
    lock_out(client, user)

    # without a reason nothing changes
    response = post_form(admin_client, f"/admin/users/{user.id}/unlock", {"reason": ""},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 303
    page = admin_client.get(response.headers["Location"])
    assert "Reason for change: Reason for change is required." in alerts(page)
    assert fresh(user).security.locked_at is not None
    assert events("account.unlocked", user) == []
    assert try_password(client, "ulla", PASSWORD).status_code == 401

    # with a reason the account is unlocked and the reason is in the audit trail
    reason = "Identity confirmed by phone, ticket 4711"
    response = post_form(admin_client, f"/admin/users/{user.id}/unlock", {"reason": reason},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 302
    assert "ulla was unlocked." in alerts(admin_client.get(response.headers["Location"]))
    assert fresh(user).security.locked_at is None
    unlocked = events("account.unlocked", user)
    assert len(unlocked) == 1
    tx = db.session.get(AuditTransaction, unlocked[0].transaction_id)
    assert tx.reason == reason
    assert tx.username == "admin.one"
    assert tx.printed_name == "Ada Admin"

    assert login(client, user).status_code == 302
    assert is_logged_in(client)


def test_a_user_without_user_management_cannot_unlock(app, client, make_user, users):
    victim = make_user("vera", roles={"auditor"})
    lock_out(client, victim)
    auditor_client = app.test_client()
    assert login(auditor_client, users["auditor"]).status_code == 302
    response = post_form(auditor_client, f"/admin/users/{victim.id}/unlock", {"reason": "I want to help"},
                         token_from="/account")
    assert response.status_code == 403
    assert "users.manage" in response.get_data(as_text=True)
    assert fresh(victim).security.locked_at is not None


def test_a_locked_user_cannot_unlock_themself_by_logging_in_later(client, make_user):
    user = make_user("paul", roles={"auditor"})
    clock.freeze(clock.now_utc())
    lock_out(client, user)
    clock.freeze(clock.now_utc() + timedelta(days=2))
    assert try_password(client, "paul", PASSWORD).status_code == 401


def test_a_deactivated_user_cannot_log_in_and_their_live_session_stops(app, client, make_user, admin_client):
    user = make_user("dora", roles={"auditor"})
    assert login(client, user).status_code == 302
    assert is_logged_in(client)

    reason = "Left the company on 2026-03-31"
    response = post_form(admin_client, f"/admin/users/{user.id}/deactivate", {"reason": reason},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 302
    assert fresh(user).active is False
    deactivated = events("user.deactivated", user)
    assert len(deactivated) == 1
    assert db.session.get(AuditTransaction, deactivated[0].transaction_id).reason == reason

    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    refused = try_password(app.test_client(), "dora", PASSWORD)
    assert refused.status_code == 401
    assert alerts(refused) == [GENERIC_LOGIN_FAILURE]


def test_deactivation_needs_a_reason(client, make_user, admin_client):
    user = make_user("rita", roles={"auditor"})
    response = post_form(admin_client, f"/admin/users/{user.id}/deactivate", {"reason": ""},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 303
    assert fresh(user).active is True
    assert events("user.deactivated") == []
    assert login(client, user).status_code == 302


class TestLoginRateLimit:
    @pytest.fixture
    def app_config(self):
        return {"LOGIN_RATE_LIMIT": "3 per minute"}

    def test_login_attempts_beyond_the_limit_get_429(self, client, make_user):
        make_user("rob", roles={"auditor"})
        for _ in range(3):
            assert try_password(client, "rob", "wrong-password-xyz").status_code == 401
        response = try_password(client, "rob", PASSWORD)
        assert response.status_code == 429
        assert "Too many attempts" in response.get_data(as_text=True)
        assert not is_logged_in(client)

    def test_the_login_page_itself_can_still_be_shown(self, client):
        for _ in range(5):
            assert client.get("/login").status_code == 200

    def test_second_factor_attempts_are_limited_too(self, client, make_user):
        user = make_user("tom", roles={"qa_approver"})
        assert try_password(client, "tom", PASSWORD).status_code == 302
        for _ in range(3):
            assert post_form(client, "/login/code", {"code": wrong_code(user)}).status_code == 401
        response = post_form(client, "/login/code", {"code": wrong_code(user)})
        assert response.status_code == 429
        assert fresh(user).security.failed_attempts == 3


def test_administrators_see_locked_accounts_as_a_security_alert_on_their_home_page(app, client, users, make_user,
                                                                                   login_as):
    victim = make_user("locked.person", roles={"operator"}, full_name="Lena Locked")
    with transaction():
        for _ in range(5):
            services.authenticate("locked.person", "definitely not it")
    login_as(users["system_admin"])
    page = client.get("/").get_data(as_text=True)
    assert "Security alert: 1 locked account(s)" in page
    assert f"/admin/users/{victim.id}" in page and "Lena Locked" in page
