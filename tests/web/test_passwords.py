"""The password policy on the change-password page, forced changes, and the administrator's password reset."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from core.audit import AuditEvent, AuditTransaction
from core.db import db
from core.testing.pages import alerts, events, field_errors, fresh
from testkit.plugin import PASSWORD, login, post_form

TEMPORARY_RE = re.compile(r'<code class="secret">([^<]+)</code>')










def change(client, current: str, new: str, confirm: str | None = None):
    return post_form(client, "/account/password", {"current_password": current, "new_password": new,
                                                   "confirm_password": new if confirm is None else confirm})


def password_works(app, username: str, password: str) -> bool:
    """Whether the password logs in (on a client of its own; a successful login ends the user's other sessions)."""
    other = app.test_client()
    response = post_form(other, "/login", {"username": username, "password": password})
    return response.status_code == 302


@pytest.fixture
def ann(make_user):
    return make_user("ann.smith", roles={"auditor"}, full_name="Ann Smith")


@pytest.fixture
def ann_client(client, ann):
    assert login(client, ann).status_code == 302
    return client


@pytest.mark.parametrize(("new_password", "rule"), [
    ("Short-pw-12", "Password must be at least 12 characters long."),
    ("My-ann.smith-Passphrase-7", "Password must not contain your username."),
    ("xANN.SMITHx-Passphrase-7", "Password must not contain your username."),
    ("Password1234!", "Password is too common; choose one that is not on a list of known passwords."),
    ("qwertyuiop123", "Password is too common; choose one that is not on a list of known passwords."),
    ("aaaaaaaaaaaaaaab", "Password must contain at least 4 different characters."),
], ids=["too-short", "contains-username", "contains-username-any-case", "common", "common-2", "few-characters"])
def test_a_password_breaking_a_rule_is_refused_naming_the_rule(app, ann, ann_client, new_password, rule):
    response = change(ann_client, PASSWORD, new_password)
    assert response.status_code == 422
    assert f"New password: {rule}" in field_errors(response)
    assert events("password.changed") == []
    assert password_works(app, "ann.smith", PASSWORD)
    assert not password_works(app, "ann.smith", new_password)


def test_the_page_states_the_policy(ann_client):
    text = ann_client.get("/account/password").get_data(as_text=True)
    assert "At least 12 characters" in text
    assert "not one of your last 5 passwords" in text


def test_a_wrong_current_password_is_refused(app, ann, ann_client):
    response = change(ann_client, "Not-My-Password-77", "Brand-New-Passphrase-42")
    assert response.status_code == 422
    assert "Current password: Current password is not correct." in field_errors(response)
    assert password_works(app, "ann.smith", PASSWORD)


def test_mismatched_confirmation_is_refused(app, ann, ann_client):
    response = change(ann_client, PASSWORD, "Brand-New-Passphrase-42", "Brand-New-Passphrase-43")
    assert response.status_code == 422
    assert "Repeat new password: The two new passwords do not match." in field_errors(response)
    assert password_works(app, "ann.smith", PASSWORD)


def test_reusing_one_of_the_last_five_passwords_is_refused(app, ann, ann_client):
    history = [PASSWORD] + [f"Rotating-Passphrase-{n}{n}x" for n in range(1, 6)]
    # P0 (current) -> P1: P0 is one of the last five, so changing straight back is refused
    assert change(ann_client, history[0], history[1]).status_code == 302
    response = change(ann_client, history[1], history[0])
    assert response.status_code == 422
    assert "New password: Password must not be one of your last 5 passwords." in field_errors(response)
    assert not password_works(app, "ann.smith", history[0])
    assert password_works(app, "ann.smith", history[1])
    assert login(ann_client, ann, history[1]).status_code == 302  # that login ended the first session

    # after P2..P5, P1 is still the fifth-newest and refused; P0 (sixth-newest) may be used again
    for old, new in zip(history[1:5], history[2:6], strict=True):
        assert change(ann_client, old, new).status_code == 302
    response = change(ann_client, history[5], history[1])
    assert response.status_code == 422
    assert "New password: Password must not be one of your last 5 passwords." in field_errors(response)
    assert change(ann_client, history[5], history[0]).status_code == 302
    assert password_works(app, "ann.smith", history[0])


def test_the_current_password_cannot_be_kept(app, ann, ann_client):
    response = change(ann_client, PASSWORD, PASSWORD)
    assert response.status_code == 422
    assert "New password: Password must not be one of your last 5 passwords." in field_errors(response)


def test_a_valid_change_works_and_is_audited(app, ann, ann_client):
    response = change(ann_client, PASSWORD, "Brand-New-Passphrase-42")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert any("Your password has been changed." in a for a in alerts(ann_client.get("/")))
    assert password_works(app, "ann.smith", "Brand-New-Passphrase-42")
    assert not password_works(app, "ann.smith", PASSWORD)
    changed = events("password.changed", ann)
    assert len(changed) == 1
    tx = db.session.get(AuditTransaction, changed[0].transaction_id)
    assert tx.username == "ann.smith"
    # neither password appears anywhere in the audit trail
    for ev in db.session.scalars(sa.select(AuditEvent)):
        assert PASSWORD not in ev.detail and "Brand-New-Passphrase-42" not in ev.detail


def test_first_login_forces_a_password_change_before_anything_else(app, client, make_user):
    user = make_user("new.starter", roles={"auditor"}, must_change_password=True)
    response = login(client, user)
    assert response.status_code == 302 and response.headers["Location"] == "/account/password"
    assert "You must choose a new password before you continue." in alerts(client.get("/account/password"))
    for path in ("/", "/account", "/audit/", "/admin/users/", "/roles", "/help/time-zones"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/account/password", path

    assert change(client, PASSWORD, "Brand-New-Passphrase-42").status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/audit/").status_code == 200
    assert fresh(user).security.must_change_password is False


def test_a_forced_change_of_a_signer_continues_to_authenticator_enrolment(client, make_user):
    user = make_user("new.approver", roles={"qa_approver"}, must_change_password=True, totp=False)
    response = login(client, user)
    assert response.headers["Location"] == "/account/password"
    response = change(client, PASSWORD, "Brand-New-Passphrase-42")
    assert response.status_code == 302 and response.headers["Location"] == "/account/totp"
    assert client.get("/").headers["Location"] == "/account/totp"


@pytest.fixture
def admin_client(app, make_user):
    admin = make_user("admin.one", roles={"system_admin"}, full_name="Ada Admin")
    c = app.test_client()
    assert login(c, admin).status_code == 302
    return c


def test_admin_reset_shows_a_temporary_password_once_and_forces_a_change(app, ann, admin_client):
    ann_session = app.test_client()
    assert login(ann_session, ann).status_code == 302

    reason = "User forgot the password, identity checked in person"
    response = post_form(admin_client, f"/admin/users/{ann.id}/reset-password", {"reason": reason},
                         token_from=f"/admin/users/{ann.id}")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Temporary password, shown only this once" in text
    temporary = TEMPORARY_RE.search(text).group(1)
    assert len(temporary) >= 16
    assert temporary not in admin_client.get(f"/admin/users/{ann.id}").get_data(as_text=True)

    reset = events("password.reset", ann)
    assert len(reset) == 1
    assert db.session.get(AuditTransaction, reset[0].transaction_id).reason == reason
    assert temporary not in reset[0].detail

    # the old password and the user's live session stop working
    assert ann_session.get("/").status_code == 302
    assert not password_works(app, "ann.smith", PASSWORD)

    # logging in with the temporary password forces a change
    user_client = app.test_client()
    response = login(user_client, ann, temporary)
    assert response.status_code == 302 and response.headers["Location"] == "/account/password"
    assert user_client.get("/").headers["Location"] == "/account/password"
    assert change(user_client, temporary, "Brand-New-Passphrase-42").status_code == 302
    assert user_client.get("/").status_code == 200


def test_admin_password_reset_needs_a_reason(app, ann, admin_client):
    response = post_form(admin_client, f"/admin/users/{ann.id}/reset-password", {"reason": ""},
                         token_from=f"/admin/users/{ann.id}")
    assert response.status_code == 303
    assert events("password.reset") == []
    assert password_works(app, "ann.smith", PASSWORD)
    assert fresh(ann).security.must_change_password is False
