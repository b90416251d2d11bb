"""OQ steps for access control: accounts, login, lockout, TOTP, passwords, sessions, CSRF and permissions.

Everything goes through the real pages with the Flask test client, as a browser would."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import clock
from core.audit import AuditEvent, AuditTransaction
from core.auth.models import User
from core.db import db
from core.testing.pages import alerts, events, field_errors, fresh
from features.support.inspection import text_of
from testkit.plugin import PASSWORD, csrf_token, login, post_form, totp_code

ROLE_CODES = {"auditor": "auditor", "operator": "operator", "QA approver": "qa_approver",
              "system administrator": "system_admin", "document author": "document_author",
              "supervisor": "supervisor", "training coordinator": "training_coordinator",
              "validation engineer": "validation_engineer"}
TEMPORARY_RE = re.compile(r'<code class="secret">([^<]+)</code>')
COOKIE = "attest_session"
NEW_PASSWORD = "Granite-Harbour-Lantern-42"


def account(ctx, username: str) -> User:
    return ctx.accounts[username]


def client_of(app, ctx, username: str):
    clients = ctx.__dict__.setdefault("clients", {})
    if username not in clients:
        clients[username] = app.test_client()
    return clients[username]


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def password_step(client, username: str, password: str):
    return post_form(client, "/login", {"username": username, "password": password})


def user_form(user: User, roles: list[str], **extra) -> dict:
    return {"username": user.username, "full_name": user.full_name, "email": user.email, "roles": roles,
            "site_id": "", "department_id": "", "supervisor_id": "", "timezone": "", **extra}


@given(parsers.re(r'^an? (?P<role>[a-zA-Z ]+?) account "(?P<username>[a-z0-9.]+)"$'))
def an_account(make_user, ctx, evidence, role, username):
    accounts = ctx.__dict__.setdefault("accounts", {})
    full_name = " ".join(part.capitalize() for part in username.split("."))
    accounts[username] = make_user(username, roles={ROLE_CODES[role]}, full_name=full_name)
    evidence.record("Account", f"{username} ({full_name}), role {role}")


@given(parsers.parse('a QA approver account "{username}" with an enrolled authenticator'))
def signer_with_totp(make_user, ctx, evidence, username):
    ctx.__dict__.setdefault("accounts", {})[username] = make_user(username, roles={"qa_approver"},
                                                                  full_name="Quinn QA", totp=True)
    clock.freeze(clock.now_utc())
    evidence.record("Account", f"{username}, role QA approver, authenticator enrolled")


@given(parsers.parse('a QA approver account "{username}" without an authenticator'))
def signer_without_totp(make_user, ctx, evidence, username):
    ctx.__dict__.setdefault("accounts", {})[username] = make_user(username, roles={"qa_approver"},
                                                                  full_name="Nora QA", totp=False)
    evidence.record("Account", f"{username}, role QA approver, no authenticator")


@given(parsers.parse('"{username}" is logged in'))
def logged_in(app, ctx, evidence, username):
    client = client_of(app, ctx, username)
    response = login(client, account(ctx, username))
    assert response.status_code == 302 and is_logged_in(client), f"{username} could not log in"
    evidence.record("Session", f"{username} logged in")


# --- login ------------------------------------------------------------------------------------------------------------


@when("an anonymous visitor asks for the home page, the documents register, the audit log and the user administration")
def anonymous_requests(client, ctx, evidence):
    ctx.responses = {page: client.get(page) for page in ("/", "/documents/", "/audit/", "/admin/users/")}


@then("every request is sent to the login page and no page content is shown")
def sent_to_login(ctx, evidence):
    shown = {page: f"{r.status_code} -> {r.headers.get('Location', '')}" for page, r in ctx.responses.items()}
    evidence.actual("; ".join(f"{page}: {where}" for page, where in shown.items()))
    for response in ctx.responses.values():
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
        assert "Audit log" not in response.get_data(as_text=True)


@when(parsers.parse('"{username}" logs in with the correct password'))
def logs_in(app, ctx, evidence, username):
    ctx.login_response = login(client_of(app, ctx, username), account(ctx, username))
    ctx.last_user = username
    evidence.record("Login", f"{username}: HTTP {ctx.login_response.status_code} -> "
                             f"{ctx.login_response.headers.get('Location')}")


@when(parsers.parse('someone tries to log in as "{username}" with a wrong password'))
def wrong_password(app, ctx, evidence, username):
    response = password_step(app.test_client(), username, "Not-the-password-at-all-1")
    ctx.__dict__.setdefault("failures", []).append(response)
    evidence.record("Failed login", f"{username}: HTTP {response.status_code}")


@then(parsers.parse('the login of "{username}" lands on the home page greeting him by his printed name'))
def lands_on_home(app, ctx, evidence, username):
    home = client_of(app, ctx, username).get("/")
    user = account(ctx, username)
    evidence.actual(f"redirected to {ctx.login_response.headers.get('Location')}; home page HTTP {home.status_code}, "
                    f"{'greets ' + user.full_name if f'Welcome, {user.full_name}' in text_of(home) else 'no greeting'}")
    assert ctx.login_response.headers["Location"] == "/" and home.status_code == 200
    assert f"Welcome, {user.full_name}" in text_of(home)


@then("both failed attempts show the same message")
def same_message(ctx, evidence):
    messages = [alerts(r) for r in ctx.failures]
    evidence.actual(" | ".join(f"HTTP {r.status_code}: {m}" for r, m in zip(ctx.failures, messages, strict=True)))
    assert len(messages) == 2 and messages[0] == messages[1] and messages[0]
    assert all(r.status_code == 401 for r in ctx.failures)


@then("the audit trail holds the successful and the two failed logins, each with the username and a UTC time")
def login_events(ctx, evidence):
    rows = db.session.execute(
        sa.select(AuditEvent.event_type, AuditEvent.subject_username, AuditTransaction.issued_at)
        .join(AuditTransaction, AuditTransaction.id == AuditEvent.transaction_id)
        .where(AuditEvent.event_type.in_(["login.success", "login.failure"])).order_by(AuditEvent.id)).all()
    for event_type, username, issued_at in rows:
        evidence.record(event_type, f"{username} at {issued_at.isoformat()}")
    evidence.actual(", ".join(f"{e} {u} {t.strftime('%H:%M:%S')} {t.tzname()}" for e, u, t in rows))
    assert [(e, u) for e, u, _ in rows] == [("login.success", "alex.auditor"), ("login.failure", "alex.auditor"),
                                            ("login.failure", "nobody.here")]
    assert all(t.utcoffset() == timedelta(0) for _, _, t in rows)


# --- lockout ----------------------------------------------------------------------------------------------------------


@when(parsers.parse('someone enters a wrong password for "{username}" as many times as the lockout threshold'))
def lock_out(app, ctx, evidence, username):
    threshold = app.config["ATTEST_LOCKOUT_THRESHOLD"]
    statuses = [password_step(app.test_client(), username, "Not-the-password-at-all-1").status_code
                for _ in range(threshold)]
    evidence.record("Lockout threshold", threshold)
    evidence.record("Attempts", ", ".join(map(str, statuses)))


@then(parsers.parse('the account "{username}" is locked and the lock is recorded as a security event'))
def is_locked(app, ctx, evidence, username):
    user = fresh(account(ctx, username))
    locked = events("account.locked", user)
    evidence.actual(f"locked at {user.security.locked_at}; {len(locked)} 'account.locked' event(s): "
                    f"{[e.detail for e in locked]}")
    assert user.security.locked_at is not None and len(locked) == 1
    assert f'"failed_attempts": {app.config["ATTEST_LOCKOUT_THRESHOLD"]}' in locked[0].detail


@then(parsers.parse('"{username}" cannot log in even with the correct password'))
def cannot_log_in(app, ctx, evidence, username):
    client = app.test_client()
    response = password_step(client, username, PASSWORD)
    evidence.actual(f"HTTP {response.status_code}: {alerts(response)}; logged in: {is_logged_in(client)}")
    assert response.status_code == 401 and not is_logged_in(client)


def admin_post(app, ctx, path: str, data: dict):
    admin = ctx.accounts["admin.one"]
    client = client_of(app, ctx, "admin.one")
    if not is_logged_in(client):
        assert login(client, admin).status_code == 302
    return post_form(client, path, data, token_from="/account")


@when(parsers.parse('the administrator unlocks "{username}" without giving a reason'))
def unlock_without_reason(app, ctx, evidence, username):
    ctx.response = admin_post(app, ctx, f"/admin/users/{account(ctx, username).id}/unlock", {"reason": ""})
    evidence.record("Unlock", f"HTTP {ctx.response.status_code}")


@then(parsers.parse('the unlock is refused and "{username}" stays locked'))
def unlock_refused(ctx, evidence, username):
    user = fresh(account(ctx, username))
    evidence.actual(f"HTTP {ctx.response.status_code}; locked: {user.security.locked}; "
                    f"'account.unlocked' events: {len(events('account.unlocked', user))}")
    assert user.security.locked and events("account.unlocked", user) == []


@when(parsers.parse('the administrator unlocks "{username}" giving the reason "{reason}"'))
def unlock_with_reason(app, ctx, evidence, username, reason):
    ctx.response = admin_post(app, ctx, f"/admin/users/{account(ctx, username).id}/unlock", {"reason": reason})
    evidence.record("Unlock", f"HTTP {ctx.response.status_code}")


@then(parsers.parse('"{username}" can log in again'))
def can_log_in(app, ctx, evidence, username):
    client = app.test_client()
    response = login(client, account(ctx, username))
    evidence.actual(f"login HTTP {response.status_code}; logged in: {is_logged_in(client)}")
    assert response.status_code == 302 and is_logged_in(client)


@then(parsers.parse('the unlock is recorded in the audit trail with the reason "{reason}"'))
def unlock_recorded(ctx, evidence, reason):
    [event] = events("account.unlocked", account(ctx, "alex.auditor"))
    tx = db.session.get(AuditTransaction, event.transaction_id)
    evidence.actual(f"'account.unlocked' by {tx.username} ({tx.printed_name}) at {tx.issued_at.isoformat()}, "
                    f"reason '{tx.reason}'")
    evidence.record("Audit transaction", tx.id)
    assert tx.username == "admin.one" and tx.reason == reason


# --- deactivation, user IDs ----------------------------------------------------------------------------------------


@when(parsers.parse('the administrator deactivates "{username}" giving the reason "{reason}"'))
def deactivate(app, ctx, evidence, username, reason):
    ctx.response = admin_post(app, ctx, f"/admin/users/{account(ctx, username).id}/deactivate", {"reason": reason})
    evidence.record("Deactivation", f"HTTP {ctx.response.status_code}")
    assert ctx.response.status_code == 302


@then(parsers.parse('the open session of "{username}" no longer works'))
def session_ended(app, ctx, evidence, username):
    response = client_of(app, ctx, username).get("/")
    evidence.actual(f"home page: HTTP {response.status_code} -> {response.headers.get('Location')}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@then(parsers.parse('the account "{username}" still exists, deactivated, with its audit trail'))
def still_exists(app, ctx, evidence, username):
    from core.audit.views import record_history

    user = fresh(account(ctx, username))
    history = record_history(User, user.id)
    page = client_of(app, ctx, "admin.one").get(f"/admin/users/{user.id}")
    evidence.actual(f"{user.username} active={user.active}, deactivated at {user.deactivated_at}; "
                    f"{len(history)} audited changes; reasons {[e.tx.reason for e in history if e.tx.reason]}; "
                    f"user page HTTP {page.status_code}")
    assert user.active is False and user.deactivated_at is not None and page.status_code == 200
    assert any(e.tx.reason == "Left the company" for e in history)


@when(parsers.parse('the administrator creates a new account with the user ID "{username}"'))
def create_same_id(app, ctx, evidence, username):
    ctx.response = admin_post(app, ctx, "/admin/users/new", {
        "username": username, "full_name": "Alexandra Newcomer", "email": "alexandra@example.com",
        "roles": ["auditor"], "site_id": "", "department_id": "", "supervisor_id": "", "timezone": ""})


@then("the creation is refused because user IDs are never reused")
def id_not_reused(ctx, evidence):
    errors = field_errors(ctx.response)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(User).where(User.username == "alex.auditor"))
    evidence.actual(f"HTTP {ctx.response.status_code}: {errors}; accounts named alex.auditor: {count}")
    assert ctx.response.status_code == 422 and count == 1
    assert any("never reused" in e for e in errors)


# --- passwords --------------------------------------------------------------------------------------------------------


@when(parsers.parse('the administrator resets the password of "{username}" giving the reason "{reason}"'))
def reset_password(app, ctx, evidence, username, reason):
    response = admin_post(app, ctx, f"/admin/users/{account(ctx, username).id}/reset-password", {"reason": reason})
    match = TEMPORARY_RE.search(response.get_data(as_text=True))
    assert response.status_code == 200 and match, "no temporary password shown"
    ctx.temporary = match.group(1)
    evidence.record("Password reset", f"HTTP {response.status_code}, temporary password shown once")


@when(parsers.parse('"{username}" logs in with the temporary password'))
def login_temporary(app, ctx, evidence, username):
    ctx.clients[username] = client = app.test_client()
    ctx.login_response = password_step(client, username, ctx.temporary)
    ctx.last_user = username


@then("he is sent to change his password before anything else")
def forced_change(app, ctx, evidence):
    client = ctx.clients[ctx.last_user]
    elsewhere = client.get("/documents/")
    evidence.actual(f"after login -> {ctx.login_response.headers.get('Location')}; documents register -> "
                    f"{elsewhere.status_code} {elsewhere.headers.get('Location')}")
    assert ctx.login_response.headers["Location"] == "/account/password"
    assert elsewhere.status_code == 302 and elsewhere.headers["Location"].startswith("/account/password")


@when(parsers.parse('he chooses the new password "{password}"'))
def choose_password(ctx, evidence, password):
    ctx.response = post_form(ctx.clients[ctx.last_user], "/account/password",
                             {"current_password": ctx.temporary, "new_password": password,
                              "confirm_password": password})
    ctx.new_password = password


@then(parsers.parse('the change is refused with "{message}"'))
def change_refused(ctx, evidence, message):
    errors = field_errors(ctx.response)
    evidence.actual(f"HTTP {ctx.response.status_code}: {errors}")
    assert ctx.response.status_code == 422 and message in errors


@then("the change is accepted and recorded as a security event")
def change_accepted(app, ctx, evidence):
    user = fresh(account(ctx, ctx.last_user))
    changed = events("password.changed", user)
    evidence.actual(f"HTTP {ctx.response.status_code} -> {ctx.response.headers.get('Location')}; must change: "
                    f"{user.security.must_change_password}; 'password.changed' events: {len(changed)}")
    assert ctx.response.status_code == 302 and not user.security.must_change_password and len(changed) == 1
    assert password_step(app.test_client(), ctx.last_user, ctx.new_password).status_code == 302


# --- second factor ----------------------------------------------------------------------------------------------------


def wrong_code(user: User) -> str:
    totp = pyotp.TOTP(fresh(user).security.totp_secret)
    now = clock.now_utc()
    valid = {totp.at(now + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    return next(c for c in ("123456", "654321", "111111", "222222") if c not in valid)


@when(parsers.parse('"{username}" enters the correct password'))
def enters_password(app, ctx, evidence, username):
    ctx.login_response = password_step(client_of(app, ctx, username), username, PASSWORD)
    evidence.record("Password step", f"HTTP {ctx.login_response.status_code} -> "
                                     f"{ctx.login_response.headers.get('Location')}")


@then(parsers.parse('"{username}" is asked for the authentication code and is not logged in yet'))
def asked_for_code(app, ctx, evidence, username):
    client = client_of(app, ctx, username)
    evidence.actual(f"sent to {ctx.login_response.headers.get('Location')}; logged in: {is_logged_in(client)}")
    assert ctx.login_response.headers["Location"].endswith("/login/code") and not is_logged_in(client)


@when(parsers.parse('"{username}" enters a wrong code'))
def enters_wrong_code(app, ctx, evidence, username):
    ctx.response = post_form(client_of(app, ctx, username), "/login/code", {"code": wrong_code(account(ctx, username))})


@then("the code is refused and the failure is recorded as a security event")
def code_refused(ctx, evidence):
    failures = events("login.totp_failure")
    evidence.actual(f"HTTP {ctx.response.status_code}: {alerts(ctx.response)}; 'login.totp_failure' events: "
                    f"{len(failures)}")
    assert ctx.response.status_code == 401 and len(failures) == 1


@when(parsers.parse('"{username}" enters the current code from the authenticator'))
def enters_code(app, ctx, evidence, username):
    ctx.code = totp_code(account(ctx, username))
    ctx.response = post_form(client_of(app, ctx, username), "/login/code", {"code": ctx.code})


@then(parsers.parse('"{username}" is logged in'))
def is_in(app, ctx, evidence, username):
    client = client_of(app, ctx, username)
    evidence.actual(f"HTTP {ctx.response.status_code} -> {ctx.response.headers.get('Location')}; "
                    f"logged in: {is_logged_in(client)}")
    assert ctx.response.status_code == 302 and is_logged_in(client)


@when(parsers.parse('the same code is used again for a second login of "{username}"'))
def replay(app, ctx, evidence, username):
    other = app.test_client()
    password_step(other, username, PASSWORD)
    ctx.response = post_form(other, "/login/code", {"code": ctx.code})
    ctx.other = other


@then("the replayed code is refused and recorded as a security event")
def replay_refused(ctx, evidence):
    replays = events("totp.replay")
    evidence.actual(f"HTTP {ctx.response.status_code}: {alerts(ctx.response)}; 'totp.replay' events: {len(replays)}")
    assert ctx.response.status_code == 401 and not is_logged_in(ctx.other) and len(replays) == 1


@then(parsers.parse('"{username}" is sent to set up an authenticator before anything else'))
def must_enrol(app, ctx, evidence, username):
    client = client_of(app, ctx, username)
    elsewhere = client.get("/documents/")
    evidence.actual(f"after login -> {ctx.login_response.headers.get('Location')}; documents register -> "
                    f"{elsewhere.status_code} {elsewhere.headers.get('Location')}")
    assert ctx.login_response.headers["Location"] == "/account/totp"
    assert elsewhere.status_code == 302 and elsewhere.headers["Location"].startswith("/account/totp")


# --- sessions ---------------------------------------------------------------------------------------------------------


@when(parsers.parse('"{username}" is inactive for one minute longer than the configured idle timeout'))
def idle(app, ctx, evidence, username):
    minutes = app.config["ATTEST_SESSION_IDLE_MINUTES"]
    clock.freeze(clock.now_utc() + timedelta(minutes=minutes + 1))
    evidence.record("Idle timeout", f"{minutes} minutes; clock advanced by {minutes + 1} minutes")


@when(parsers.parse('"{username}" opens the home page'))
def opens_home(app, ctx, evidence, username):
    ctx.response = client_of(app, ctx, username).get("/")
    ctx.last_user = username


@then("he is sent to the login page with a message naming the inactivity")
def expired_idle(app, ctx, evidence):
    page = ctx.clients[ctx.last_user].get(ctx.response.headers.get("Location", "/login"))
    evidence.actual(f"HTTP {ctx.response.status_code} -> {ctx.response.headers.get('Location')}: {alerts(page)}")
    assert ctx.response.status_code == 302 and ctx.response.headers["Location"].startswith("/login")
    assert any("without activity" in m for m in alerts(page))


@then("the session expiry is recorded as a security event")
def expiry_recorded(ctx, evidence):
    expired = events("session.expired", account(ctx, ctx.last_user))
    evidence.actual(f"{len(expired)} 'session.expired' event(s) for {ctx.last_user}")
    assert len(expired) == 1


@when(parsers.parse('"{username}" keeps working until just past the configured maximum session length'))
def long_session(app, ctx, evidence, username):
    hours = app.config["ATTEST_SESSION_MAX_HOURS"]
    idle = app.config["ATTEST_SESSION_IDLE_MINUTES"]
    client = client_of(app, ctx, username)
    end = clock.now_utc() + timedelta(hours=hours, minutes=1)
    pages = 0
    while clock.now_utc() < end:
        clock.freeze(min(end, clock.now_utc() + timedelta(minutes=idle)))
        ctx.response = client.get("/")
        pages += 1
        if ctx.response.status_code != 200:
            break
    ctx.last_user = username
    evidence.record("Activity", f"a page every {idle} minutes, {pages} pages over {hours} h 1 min")


@then("he is sent to the login page with a message naming the maximum length")
def expired_lifetime(ctx, evidence):
    page = ctx.clients[ctx.last_user].get(ctx.response.headers.get("Location", "/login"))
    evidence.actual(f"HTTP {ctx.response.status_code} -> {ctx.response.headers.get('Location')}: {alerts(page)}")
    assert ctx.response.status_code == 302 and any("maximum length" in m for m in alerts(page))


@given(parsers.parse('a copy of the session cookie of "{username}"'))
def copy_cookie(app, ctx, evidence, username):
    ctx.copy = app.test_client()
    ctx.copy.set_cookie(COOKIE, client_of(app, ctx, username).get_cookie(COOKIE).value)
    ctx.last_user = username


@given("the copied cookie opens the home page")
def copy_works(ctx, evidence):
    assert is_logged_in(ctx.copy)
    evidence.record("Copied cookie", "opens the home page while the session is live")


@when(parsers.parse('"{username}" logs out'))
def logs_out(app, ctx, evidence, username):
    client = client_of(app, ctx, username)
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/account")})
    evidence.record("Logout", f"HTTP {response.status_code}")
    assert response.status_code == 302


@then("the copied cookie no longer opens the home page")
def copy_refused(ctx, evidence):
    response = ctx.copy.get("/")
    evidence.actual(f"HTTP {response.status_code} -> {response.headers.get('Location')}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@when(parsers.parse('"{username}" posts a deactivation of "{target}" without an anti-forgery token'))
def post_without_token(app, ctx, evidence, username, target):
    response = client_of(app, ctx, username).post(f"/admin/users/{account(ctx, target).id}/deactivate",
                                                  data={"reason": "Cross-site request"})
    ctx.__dict__.setdefault("refusals", []).append(response)


@when(parsers.parse('"{username}" posts a deactivation of "{target}" with the token of another session'))
def post_foreign_token(app, ctx, evidence, username, target):
    foreign = csrf_token(app.test_client(), "/login")
    response = client_of(app, ctx, username).post(f"/admin/users/{account(ctx, target).id}/deactivate",
                                                  data={"reason": "Cross-site request", "csrf_token": foreign})
    ctx.__dict__.setdefault("refusals", []).append(response)


@when(parsers.parse('"{username}" posts a deactivation of "{target}" with his own anti-forgery token'))
def post_own_token(app, ctx, evidence, username, target):
    ctx.response = post_form(client_of(app, ctx, username), f"/admin/users/{account(ctx, target).id}/deactivate",
                             {"reason": "Forced browsing"}, token_from="/account")
    ctx.last_user = username


@then("both requests are refused as not sent from Attest")
def csrf_refused(ctx, evidence):
    evidence.actual("; ".join(f"HTTP {r.status_code}: {'Form expired or not sent from Attest' in text_of(r)}"
                              for r in ctx.refusals))
    assert [r.status_code for r in ctx.refusals] == [400, 400]
    assert all("Form expired or not sent from Attest" in text_of(r) for r in ctx.refusals)


@then(parsers.parse('"{username}" is still active and no deactivation is recorded'))
def still_active(ctx, evidence, username):
    user = fresh(account(ctx, username))
    evidence.actual(f"{username} active={user.active}; 'user.deactivated' events: {len(events('user.deactivated'))}")
    assert user.active is True and events("user.deactivated") == []


# --- permissions ------------------------------------------------------------------------------------------------------


@when(parsers.parse('"{username}" requests "{method} {page}"'))
def request_page(app, ctx, evidence, username, method, page):
    client = client_of(app, ctx, username)
    ctx.response = client.open(page, method=method)
    ctx.last_user = username


@then(parsers.parse('the request is refused with 403 naming the permission "{permission}"'))
def refused_403(ctx, evidence, permission):
    evidence.actual(f"HTTP {ctx.response.status_code}; page names {permission}: "
                    f"{permission in text_of(ctx.response)}")
    assert ctx.response.status_code == 403 and permission in text_of(ctx.response)


@then(parsers.parse('the refusal is recorded as a security event for "{username}"'))
def denial_recorded(ctx, evidence, username):
    denied = events("permission.denied", account(ctx, username))
    evidence.actual(f"{len(denied)} 'permission.denied' event(s): {[e.detail for e in denied]}")
    assert len(denied) == 1 and ctx.response.request.path in denied[0].detail


@when(parsers.parse('"{username}" gives "{target}" the roles "{first}" and "{second}" with the reason "{reason}"'))
def give_roles(app, ctx, evidence, username, target, first, second, reason):
    user = account(ctx, target)
    ctx.roles_before = fresh(user).role_codes
    ctx.response = post_form(client_of(app, ctx, username), f"/admin/users/{user.id}/edit",
                             user_form(user, [first, second], reason=reason))
    ctx.last_user = target


@when(parsers.parse('"{username}" gives himself the roles "{first}" and "{second}" with the reason "{reason}"'))
def give_own_roles(app, ctx, evidence, username, first, second, reason):
    give_roles(app, ctx, evidence, username, username, first, second, reason)


@then(parsers.parse('the change is refused naming segregation of duties and "{username}" keeps his roles'))
def roles_refused(ctx, evidence, username):
    messages = field_errors(ctx.response) + alerts(ctx.response)
    roles = fresh(account(ctx, username)).role_codes
    evidence.actual(f"HTTP {ctx.response.status_code}: {messages}; roles now {sorted(roles)}")
    assert ctx.response.status_code in (403, 422) and any("Segregation of duties" in m for m in messages)
    assert roles == ctx.roles_before and events("roles.changed") == []

