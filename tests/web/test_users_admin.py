"""User administration through the pages, the audit trail an inspector reads, and its CSV export."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditTransaction
from core.auth.models import User
from core.db import db
from core.testing.pages import count, events, field_errors, fresh
from testkit.plugin import PASSWORD, login, post_form

TEMPORARY_RE = re.compile(r'<code class="secret">([^<]+)</code>')
CHAIN_SEQ_RE = re.compile(r'<td class="text-muted small">(\d+)</td>')

DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)












def by_username(username: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.username == username))


def user_form(username: str, full_name: str, email: str, roles: list[str], **extra) -> dict:
    return {"username": username, "full_name": full_name, "email": email, "roles": roles, "site_id": "",
            "department_id": "", "supervisor_id": "", "timezone": "", **extra}


def create_via_form(client, username: str, full_name: str, email: str | None = None, roles=("operator",)):
    return post_form(client, "/admin/users/new",
                     user_form(username, full_name, email or f"{username}@example.com", list(roles)))


def edit_via_form(client, user, reason: str, **changes):
    data = user_form(user.username, user.full_name, user.email, sorted(user.role_codes), reason=reason)
    data.update(changes)
    return post_form(client, f"/admin/users/{user.id}/edit", data)


def shown_chain_positions(response) -> set[int]:
    return {int(n) for n in CHAIN_SEQ_RE.findall(response.get_data(as_text=True))}


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))




# --- creating accounts -----------------------------------------------------------------------------------------------


def test_an_administrator_creates_a_user_and_sees_the_temporary_password_once(app, admin_client):
    response = create_via_form(admin_client, "new.hire", "Nora Newhire", roles=("operator", "supervisor"))
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "User created" in text and "Temporary password, shown only this once" in text
    temporary = TEMPORARY_RE.search(text).group(1)

    user = by_username("new.hire")
    assert user.full_name == "Nora Newhire" and user.email == "new.hire@example.com"
    assert user.role_codes == {"operator", "supervisor"}
    assert user.security.must_change_password is True
    assert temporary not in admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert temporary not in admin_client.get("/admin/users/").get_data(as_text=True)

    tx = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.chain_seq.desc())).first()
    assert tx.username == "admin.one" and ",core_user," in tx.record_types

    newcomer = app.test_client()
    response = post_form(newcomer, "/login", {"username": "new.hire", "password": temporary})
    assert response.status_code == 302
    # no authenticator yet, so no code step: the forced password change comes first
    assert response.headers["Location"] == "/account/password"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("email", "not-an-email", "E-mail: E-mail must be a valid address."),
    ("username", "Bad Name!", "Username: Username must be 2-64 characters: lower-case letters, digits, '.', '_' "
                              "or '-', starting with a letter or digit."),
    ("username", "", "Username: Username is required."),
    ("full_name", "", "Full printed name: Full printed name is required."),
    ("full_name", "Al", "Full printed name: Full printed name is required (at least 3 characters); it appears on "
                        "every signature."),
    ("timezone", "Mars/Olympus", "Time zone: Time zone must be an IANA name such as Europe/Zurich, not "
                                 "'Mars/Olympus'."),
    ("roles", ["superuser"], "Roles: 'superuser' is not a valid choice for this field."),
], ids=["bad-email", "bad-username", "missing-username", "missing-full-name", "short-full-name", "bad-timezone",
        "unknown-role"])
def test_bad_input_gets_a_422_naming_the_field_and_the_rule_and_writes_nothing(admin_client, field, value, message):
    users_before, tx_before = count(User), count(AuditTransaction)
    data = user_form("valid.name", "Valid Name", "valid@example.com", ["operator"])
    data[field] = value
    response = post_form(admin_client, "/admin/users/new", data)
    assert response.status_code == 422
    assert message in field_errors(response)
    assert count(User) == users_before
    assert count(AuditTransaction) == tx_before


def test_a_user_without_user_management_cannot_open_the_new_user_form(app, make_user):
    coordinator = make_user("tc", roles={"training_coordinator"})
    client = app.test_client()
    assert login(client, coordinator).status_code == 302
    assert client.get("/admin/users/").status_code == 200
    assert client.get("/admin/users/new").status_code == 403


# --- editing needs a reason; the user page shows the audit trail ------------------------------------------------------


def test_editing_a_users_name_requires_a_reason(make_user, admin_client):
    user = make_user("mia", roles={"operator"}, full_name="Mia Maiden")
    tx_before = count(AuditTransaction)
    response = edit_via_form(admin_client, user, "", full_name="Mia Married")
    assert response.status_code == 422
    assert "Reason for change: Reason for change is required." in field_errors(response)
    assert fresh(user).full_name == "Mia Maiden"
    assert count(AuditTransaction) == tx_before


def test_the_user_page_shows_old_and_new_values_and_the_reason_to_an_auditor_of_the_system(make_user, admin_client):
    user = make_user("mia", roles={"operator"}, full_name="Mia Maiden")
    reason = "Name changed after marriage, HR ticket 1234"
    response = edit_via_form(admin_client, user, reason, full_name="Mia Married")
    assert response.status_code == 302
    assert fresh(user).full_name == "Mia Married"

    page = admin_client.get(f"/admin/users/{user.id}")
    text = html.unescape(page.get_data(as_text=True))
    assert "Audit trail of this account" in text
    rows = re.findall(r"<td>Full printed name</td><td>(.*?)</td><td>(.*?)</td>", text)
    assert rows == [("", "Mia Maiden"), ("Mia Maiden", "Mia Married")]  # created, then changed
    assert reason in text
    assert "Ada Admin" in text


def test_a_viewer_without_audit_permission_does_not_see_the_audit_trail(app, make_user, admin_client):
    user = make_user("mia", roles={"operator"}, full_name="Mia Maiden")
    assert edit_via_form(admin_client, user, "Typo in the name", full_name="Mia Maidan").status_code == 302
    coordinator = make_user("tc", roles={"training_coordinator"})
    client = app.test_client()
    assert login(client, coordinator).status_code == 302
    page = client.get(f"/admin/users/{user.id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Mia Maidan" in text
    assert "Audit trail of this account" not in text and "Typo in the name" not in text


def test_the_user_page_lists_the_accounts_security_events(app, make_user, admin_client):
    user = make_user("mia", roles={"auditor"}, full_name="Mia Maiden")
    post_form(app.test_client(), "/login", {"username": "mia", "password": "wrong-password-here"})
    text = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Security events" in text and "Login failed" in text


# --- the audit log: filters and export -------------------------------------------------------------------------------


@pytest.fixture
def history(app, make_user):
    """Three days of activity: day 1 an administrator creates 'alpha', day 2 renames it, day 3 an auditor logs in."""
    admin = make_user("admin.one", roles={"system_admin"}, full_name="Ada Admin")
    auditor = make_user("audrey", roles={"auditor"}, full_name="Audrey Auditor")
    clock.freeze(DAY1)
    admin_client = app.test_client()
    assert login(admin_client, admin).status_code == 302
    assert create_via_form(admin_client, "alpha", "Alpha Person").status_code == 200
    clock.freeze(DAY2)
    admin_client = app.test_client()
    assert login(admin_client, admin).status_code == 302
    alpha = by_username("alpha")
    assert edit_via_form(admin_client, alpha, "Spelling of the surname", full_name="Alpha Persson").status_code == 302
    clock.freeze(DAY3)
    auditor_client = app.test_client()
    assert login(auditor_client, auditor).status_code == 302
    return auditor_client


def all_transactions() -> list[AuditTransaction]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditTransaction).where(AuditTransaction.chain_seq.is_not(None))))


def test_audit_log_filters_by_user(history):
    response = history.get("/audit/?user=admin.one")
    assert response.status_code == 200
    expected = {tx.chain_seq for tx in all_transactions() if tx.username == "admin.one"}
    assert expected and shown_chain_positions(response) == expected
    assert '<span class="text-muted">(audrey)</span>' not in response.get_data(as_text=True)


def test_audit_log_filters_by_record_type(history):
    response = history.get("/audit/?record_type=core_user")
    expected = {tx.chain_seq for tx in all_transactions() if ",core_user," in (tx.record_types or "")}
    assert shown_chain_positions(response) == expected
    text = response.get_data(as_text=True)
    assert "Created User" in text and "Changed User" in text
    assert '<span class="badge bg-info text-dark">Login succeeded</span>' not in text


def test_audit_log_filters_by_date_range(history):
    response = history.get(f"/audit/?date_from={DAY2.date()}&date_to={DAY2.date()}")
    expected = {tx.chain_seq for tx in all_transactions() if DAY2.date() == tx.issued_at.date()}
    assert expected and shown_chain_positions(response) == expected
    text = html.unescape(response.get_data(as_text=True))
    assert "Spelling of the surname" in text and "Alpha Person → Alpha Persson" in text
    assert "Created User" not in text


def test_audit_log_refuses_an_invalid_filter_with_a_message(history):
    response = history.get("/audit/?date_from=02.03.2026")
    assert response.status_code == 422
    assert "Date must be written as YYYY-MM-DD." in response.get_data(as_text=True)


@pytest.mark.parametrize("query", ["user=admin.one", "record_type=core_user", f"date_from={DAY2.date()}"
                                   f"&date_to={DAY2.date()}", "user=admin.one&record_type=core_user_role"])
def test_csv_export_contains_what_the_filter_shows_and_is_audited(history, query):
    shown = shown_chain_positions(history.get(f"/audit/?{query}"))
    response = history.get(f"/audit/export.csv?{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = csv_rows(response)
    assert {int(r["chain_position"]) for r in rows} == shown

    exported = events("audit.exported")
    assert len(exported) == 1
    detail = json.loads(exported[0].detail)
    assert detail["transactions"] == len(shown)
    expected_filters = dict(part.split("=", 1) for part in query.split("&"))
    assert json.loads(detail["filters"]) == expected_filters
    tx = db.session.get(AuditTransaction, exported[0].transaction_id)
    assert tx.username == "audrey"


def test_csv_export_lists_old_and_new_values_and_the_reason(history):
    rows = csv_rows(history.get(f"/audit/export.csv?date_from={DAY2.date()}&date_to={DAY2.date()}"))
    change = [r for r in rows if r["kind"] == "record" and r["field"] == "Full printed name"]
    assert len(change) == 1
    assert (change[0]["old_value"], change[0]["new_value"]) == ("Alpha Person", "Alpha Persson")
    assert change[0]["reason"] == "Spelling of the surname"
    assert change[0]["username"] == "admin.one" and change[0]["printed_name"] == "Ada Admin"


def test_exporting_needs_the_export_permission(app, users):
    client = app.test_client()
    assert login(client, users["system_admin"]).status_code == 302
    assert client.get("/audit/").status_code == 200
    assert client.get("/audit/export.csv").status_code == 403
    assert events("audit.exported") == []


# --- markup in user-supplied text is shown, never executed -----------------------------------------------------------


def test_markup_in_a_full_name_is_escaped_on_the_users_list_and_audit_log(app, make_user, admin_client):
    evil = '<script>alert("x")</script> Eve'
    assert create_via_form(admin_client, "eve.evil", evil).status_code == 200
    user = by_username("eve.evil")
    assert user.full_name == evil
    reason = "<b>bold</b> <img src=x onerror=alert(1)> reason"
    assert edit_via_form(admin_client, user, reason, full_name=evil + " II").status_code == 302

    auditor = make_user("audrey", roles={"auditor"})
    auditor_client = app.test_client()
    assert login(auditor_client, auditor).status_code == 302
    pages = {
        "users list": admin_client.get("/admin/users/"),
        "user page": admin_client.get(f"/admin/users/{user.id}"),
        "audit log": auditor_client.get("/audit/"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        text = response.get_data(as_text=True)
        assert "<script>alert" not in text, name
        assert "&lt;script&gt;alert(" in text, name
    for name in ("user page", "audit log"):
        text = pages[name].get_data(as_text=True)
        assert "<img src=x" not in text and "<b>bold</b>" not in text, name
        assert "&lt;b&gt;bold&lt;/b&gt;" in text, name


def test_the_new_user_can_finish_their_first_login(app, admin_client):
    response = create_via_form(admin_client, "new.auditor", "Nick Newauditor", roles=("auditor",))
    temporary = TEMPORARY_RE.search(response.get_data(as_text=True)).group(1)
    client = app.test_client()
    assert post_form(client, "/login", {"username": "new.auditor", "password": temporary}).status_code == 302
    response = post_form(client, "/account/password", {"current_password": temporary, "new_password": PASSWORD,
                                                       "confirm_password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/audit/").status_code == 200


def test_csv_export_neutralises_spreadsheet_formulas_in_names(app, make_user, admin_client):
    formula = '=HYPERLINK("http://evil.example","Click")'
    assert create_via_form(admin_client, "formula.name", formula).status_code == 200
    auditor = make_user("audrey", roles={"auditor"})
    client = app.test_client()
    assert login(client, auditor).status_code == 302
    rows = csv_rows(client.get("/audit/export.csv?record_type=core_user"))
    names = [r["new_value"] for r in rows if r["field"] == "Full printed name" and "HYPERLINK" in r["new_value"]]
    assert names == ["'" + formula]
    assert not any(value.startswith(("=", "+", "-", "@")) for r in rows for value in r.values() if value)
