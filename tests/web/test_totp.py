"""The TOTP second factor: enrolment, login with a code, replay refusal, forced enrolment and administrator reset."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditEvent, AuditTransaction
from core.db import db
from core.testing.pages import alerts, events, fresh
from testkit.plugin import PASSWORD, csrf_token, login, post_form, totp_code


@pytest.fixture(autouse=True)
def frozen_clock():
    clock.freeze(clock.now_utc())


SECRET_RE = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')








def code_for(secret: str, at=None) -> str:
    return pyotp.TOTP(secret).at(at or clock.now_utc())


def wrong_code_for(secret: str) -> str:
    totp = pyotp.TOTP(secret)
    now = clock.now_utc()
    valid = {totp.at(now + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    return next(c for c in ("123456", "654321", "111111", "222222") if c not in valid)


def password_step(client, username: str, password: str = PASSWORD):
    return post_form(client, "/login", {"username": username, "password": password})


def open_enrolment(client) -> tuple[str, str, str]:
    """GET the enrolment page as a browser does: returns the page, the key it shows and its CSRF token."""
    page = client.get("/account/totp")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    secret = SECRET_RE.search(text).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text).group(1)
    return text, secret, token


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200




def test_enrolment_page_shows_an_svg_qr_code_and_the_key(client, make_user):
    user = make_user("eve", roles={"auditor"})
    assert login(client, user).status_code == 302
    text, secret, _ = open_enrolment(client)
    assert "<svg" in text
    assert "Authenticator set-up code" in text
    assert len(secret) >= 16
    assert fresh(user).security.totp_pending_secret == secret
    assert fresh(user).security.totp_secret is None


def test_enrolment_with_a_wrong_code_is_refused_with_a_message(client, make_user):
    user = make_user("eve", roles={"auditor"})
    assert login(client, user).status_code == 302
    _, secret, token = open_enrolment(client)
    response = client.post("/account/totp", data={"code": wrong_code_for(secret), "csrf_token": token})
    assert response.status_code == 422
    assert "The code does not match" in response.get_data(as_text=True)
    assert fresh(user).security.totp_secret is None
    assert events("totp.enrolled") == []


def test_enrolment_with_the_right_code_activates_the_authenticator(client, make_user):
    user = make_user("eve", roles={"auditor"})
    assert login(client, user).status_code == 302
    _, secret, token = open_enrolment(client)
    response = client.post("/account/totp", data={"code": code_for(secret), "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Your authenticator is set up." in " ".join(alerts(client.get("/")))
    sec = fresh(user).security
    assert sec.totp_secret == secret and sec.totp_pending_secret is None and sec.totp_enrolled_at is not None
    assert len(events("totp.enrolled", user)) == 1
    # the secret is never written into the audit trail
    assert all(secret not in e.detail for e in db.session.scalars(sa.select(AuditEvent)))


def test_login_requires_the_code_once_enrolled(app, client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    response = password_step(client, "quinn")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/code")
    assert not is_logged_in(client)  # a password alone does not give a session

    response = post_form(client, "/login/code", {"code": wrong_code_for(user.security.totp_secret)})
    assert response.status_code == 401
    assert "The authentication code is not valid" in " ".join(alerts(response))
    assert len(events("login.totp_failure", user)) == 1

    response = post_form(client, "/login/code", {"code": totp_code(user)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert is_logged_in(client)


def test_the_code_step_cannot_be_used_without_the_password_step(client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    token = csrf_token(client, "/login")
    response = client.post("/login/code", data={"code": code_for(user.security.totp_secret), "csrf_token": token})
    assert response.status_code == 302
    assert not is_logged_in(client)


def test_the_code_step_expires_five_minutes_after_the_password(client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    assert password_step(client, "quinn").status_code == 302
    token = csrf_token(client, "/login/code")
    clock.freeze(clock.now_utc() + timedelta(minutes=5, seconds=1))
    response = client.post("/login/code", data={"code": code_for(user.security.totp_secret), "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert "sign-in attempt expired" in " ".join(alerts(client.get(response.headers["Location"])))
    assert not is_logged_in(client)


def test_a_replayed_code_is_refused_and_audited(app, client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    code = code_for(user.security.totp_secret)
    assert password_step(client, "quinn").status_code == 302
    assert post_form(client, "/login/code", {"code": code}).status_code == 302
    assert is_logged_in(client)

    # someone who watched the code being typed tries it again within the same 30-second step
    other = app.test_client()
    assert password_step(other, "quinn").status_code == 302
    response = post_form(other, "/login/code", {"code": code})
    assert response.status_code == 401
    assert "already used" in " ".join(alerts(response))
    assert not is_logged_in(other)
    assert len(events("totp.replay", user)) == 1
    assert len(events("login.success", user)) == 1


def test_a_code_of_an_earlier_step_is_refused_after_a_later_one_was_used(client, make_user):
    user = make_user("quinn", roles={"qa_approver"})
    secret = user.security.totp_secret
    earlier = code_for(secret, clock.now_utc() - timedelta(seconds=30))
    assert password_step(client, "quinn").status_code == 302
    assert post_form(client, "/login/code", {"code": code_for(secret)}).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account")})
    assert password_step(client, "quinn").status_code == 302
    assert post_form(client, "/login/code", {"code": earlier}).status_code == 401
    assert len(events("totp.replay", user)) == 1


def test_a_signer_without_an_authenticator_is_forced_to_enrol(client, make_user):
    user = make_user("nina", roles={"qa_approver"}, totp=False)
    response = login(client, user)
    assert response.status_code == 302 and response.headers["Location"] == "/account/totp"
    for path in ("/", "/account", "/roles", "/audit/", "/admin/users/", "/help/time-zones"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/account/totp", path

    _, secret, token = open_enrolment(client)
    response = client.post("/account/totp", data={"code": code_for(secret), "csrf_token": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/audit/").status_code == 200


def test_a_non_signer_is_not_forced_to_enrol(client, make_user):
    user = make_user("alex", roles={"auditor"})
    response = login(client, user)
    assert response.headers["Location"] == "/"
    assert client.get("/audit/").status_code == 200


def test_admin_reset_makes_the_old_secret_stop_working_at_once(app, client, make_user, admin_client):
    user = make_user("quinn", roles={"qa_approver"})
    old_secret = user.security.totp_secret
    assert login(client, user).status_code == 302
    assert is_logged_in(client)

    # a second sign-in has passed the password step and waits for the code when the device is revoked
    waiting = app.test_client()
    assert password_step(waiting, "quinn").status_code == 302
    waiting_token = csrf_token(waiting, "/login/code")

    clock.freeze(clock.now_utc() + timedelta(seconds=60))
    reason = "Phone lost, reported by the user on 2026-03-02"
    response = post_form(admin_client, f"/admin/users/{user.id}/reset-totp", {"reason": reason},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 302
    assert "was revoked" in " ".join(alerts(admin_client.get(response.headers["Location"])))
    reset = events("totp.reset", user)
    assert len(reset) == 1
    assert db.session.get(AuditTransaction, reset[0].transaction_id).reason == reason

    # the live session ended
    assert not is_logged_in(client)
    # a valid code of the old secret no longer completes the waiting sign-in
    response = waiting.post("/login/code", data={"code": code_for(old_secret), "csrf_token": waiting_token})
    assert response.status_code == 401
    assert not is_logged_in(waiting)

    # the next login sends the user to enrol a new device; the old secret is not accepted there either
    response = password_step(client, "quinn")
    assert response.status_code == 302 and response.headers["Location"] == "/account/totp"
    _, new_secret, token = open_enrolment(client)
    assert new_secret != old_secret
    old = code_for(old_secret)
    if old != code_for(new_secret):
        response = client.post("/account/totp", data={"code": old, "csrf_token": token})
        assert response.status_code == 422
    assert fresh(user).security.totp_secret is None


def test_admin_reset_of_a_second_factor_needs_a_reason(client, make_user, admin_client):
    user = make_user("quinn", roles={"qa_approver"})
    secret = user.security.totp_secret
    response = post_form(admin_client, f"/admin/users/{user.id}/reset-totp", {"reason": ""},
                         token_from=f"/admin/users/{user.id}")
    assert response.status_code == 303
    assert fresh(user).security.totp_secret == secret
    assert events("totp.reset") == []
    assert login(client, user).status_code == 302
