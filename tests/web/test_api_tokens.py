"""Personal API tokens in the web pages: the secret is shown once and stored only as a hash, the owner or an
administrator revokes a token (with a reason when it is someone else's), nobody else can, and each step is audited."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditTransaction
from core.auth.tokens import ApiToken
from core.db import db
from core.testing.pages import alerts, events, field_errors
from testkit.plugin import login, post_form

PAGE = "/account/api-tokens/"
SECRET_RE = re.compile(r"att_[A-Za-z0-9_-]{43}")


def create(client, name: str = "MES line 4", expires_on: str = ""):
    return post_form(client, PAGE, {"name": name, "expires_on": expires_on})


def secret_of(response) -> str:
    found = set(SECRET_RE.findall(response.get_data(as_text=True)))
    assert len(found) == 1, found
    return found.pop()


def the_token() -> ApiToken:
    db.session.expire_all()
    return db.session.scalars(sa.select(ApiToken)).one()


def ask_api(client, secret: str):
    """An authenticated question about an unknown document: 404 means the token was accepted, 401 that it was not."""
    return client.get("/api/v1/qualification", query_string={"user": "operator", "document": "SOP-XX-999"},
                      headers={"Authorization": f"Bearer {secret}"}).status_code


@pytest.fixture
def operator(users, login_as):
    login_as(users["operator"])
    return users["operator"]


def test_the_secret_is_shown_once_and_only_its_hash_is_stored(app, client, operator):
    created = create(client)
    assert created.status_code == 200
    secret = secret_of(created)
    assert "shown only this once" in created.get_data(as_text=True)

    token = the_token()
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (token.user_id, token.name, token.token_prefix) == (operator.id, "MES line 4", secret[:10])
    listing = client.get(PAGE).get_data(as_text=True)
    assert secret[:10] in listing and secret not in listing
    for table in db.metadata.sorted_tables:  # live tables, version tables and the audit trail
        rows = db.session.execute(sa.select(table)).all()
        assert secret not in repr(rows), table.name
    assert ask_api(app.test_client(), secret) == 404


def test_creating_a_token_is_audited_under_the_owners_name(app, client, operator):
    secret = secret_of(create(client, expires_on=(clock.now_utc().date() + timedelta(days=90)).isoformat()))
    [event] = events("api_token.created", operator)
    detail = json.loads(event.detail)
    assert (detail["token"], detail["name"]) == (secret[:10], "MES line 4")
    assert detail["expires_on"] == (clock.now_utc().date() + timedelta(days=90)).isoformat()
    assert db.session.get(AuditTransaction, event.transaction_id).user_id == operator.id
    assert secret not in event.detail


@pytest.mark.parametrize(("name", "expires_on", "message"), [
    ("", "", "Name: Name is required."),
    ("ab", "", "Name: Name must be 3 to 100 characters, e.g. 'MES line 4 qualification check'."),
    ("MES line 4", "today", "Expires on: Expiry date must be in the future."),
    ("MES line 4", "31.12.2030", "Expires on: Not a valid date value."),
])
def test_a_token_needs_a_name_and_a_future_expiry_date(app, client, operator, name, expires_on, message):
    if expires_on == "today":
        expires_on = clock.now_utc().date().isoformat()
    response = create(client, name, expires_on)
    assert response.status_code == 422
    assert message in field_errors(response)
    assert not SECRET_RE.search(response.get_data(as_text=True))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_the_owner_revokes_their_token_after_confirming_and_it_stops_working(app, client, operator):
    secret = secret_of(create(client))
    token = the_token()
    confirm = client.get(f"{PAGE}?revoke={token.id}").get_data(as_text=True)
    assert "Every system using this token is refused" in confirm
    response = post_form(client, f"{PAGE}{token.id}/revoke", {"back": "own"}, token_from=PAGE)
    assert response.status_code == 302
    token = the_token()
    assert (token.state, token.revoked_by_id) == ("Revoked", operator.id)
    assert ask_api(app.test_client(), secret) == 401
    [event] = events("api_token.revoked", operator)
    assert json.loads(event.detail)["token"] == secret[:10]
    assert db.session.get(AuditTransaction, event.transaction_id).user_id == operator.id
    again = post_form(client, f"{PAGE}{token.id}/revoke", {}, token_from=PAGE, follow_redirects=True)
    assert "This token is already revoked." in alerts(again)
    assert len(events("api_token.revoked")) == 1


def test_nobody_else_sees_or_revokes_a_persons_token(app, client, users, operator):
    secret = secret_of(create(client))
    token = the_token()
    other = app.test_client()
    login(other, users["supervisor"])
    assert token.token_prefix not in other.get(PAGE).get_data(as_text=True)
    assert token.token_prefix not in other.get(f"{PAGE}?revoke={token.id}").get_data(as_text=True)
    response = post_form(other, f"{PAGE}{token.id}/revoke", {"reason": "Trying anyway"}, token_from=PAGE)
    assert response.status_code == 404
    assert the_token().state == "Active"
    assert events("api_token.revoked") == []
    assert ask_api(app.test_client(), secret) == 404


def test_revoking_without_a_csrf_token_is_refused(app, client, operator):
    create(client)
    token = the_token()
    response = client.post(f"{PAGE}{token.id}/revoke", data={"back": "own"})
    assert response.status_code == 400
    assert the_token().state == "Active"


def test_an_administrator_lists_everyones_tokens_and_revokes_one_with_a_reason(app, client, users, operator,
                                                                                admin, admin_client):
    secret = secret_of(create(client))
    token = the_token()
    listing = admin_client.get(f"{PAGE}all").get_data(as_text=True)
    assert token.token_prefix in listing and operator.username in listing and secret not in listing
    confirm = admin_client.get(f"{PAGE}all?revoke={token.id}").get_data(as_text=True)
    assert "Revoking another person's token is recorded in the audit trail with this reason." in confirm

    without_reason = post_form(admin_client, f"{PAGE}{token.id}/revoke", {"back": "all"}, token_from=f"{PAGE}all",
                               follow_redirects=True)
    assert "A reason for change (at least 4 characters) is required" in " ".join(alerts(without_reason))
    assert the_token().state == "Active"

    response = post_form(admin_client, f"{PAGE}{token.id}/revoke", {"back": "all", "reason": "Laptop of MES stolen"},
                         token_from=f"{PAGE}all")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{PAGE}all")
    token = the_token()
    assert (token.state, token.revoked_by_id) == ("Revoked", admin.id)
    assert ask_api(app.test_client(), secret) == 401
    [event] = events("api_token.revoked", operator)
    tx = db.session.get(AuditTransaction, event.transaction_id)
    assert (tx.user_id, tx.reason) == (admin.id, "Laptop of MES stolen")
    assert "Revoked" in client.get(PAGE).get_data(as_text=True)  # the owner sees who revoked it
    assert "Ada Admin" in client.get(PAGE).get_data(as_text=True)


def test_only_administrators_see_everyones_tokens(app, client, operator):
    response = client.get(f"{PAGE}all")
    assert response.status_code == 403
    assert "(users.manage)" in response.get_data(as_text=True)
