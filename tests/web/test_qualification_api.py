"""GET /api/v1/qualification: the answer a shop-floor system gets, who may ask, what is refused and how, and the audit
event every request leaves under the token owner's name."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditEvent, AuditTransaction
from core.auth import services as auth_services
from core.auth import tokens
from core.db import db, transaction
from core.testing.pages import events
from features.support.documents import (
    approved_revision,
    effective_revision,
    hold,
    new_document,
    run,
    setup_people,
    train,
)
from testkit.plugin import login

URL = "/api/v1/qualification"


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def new_token(owner, **kwargs) -> str:
    with transaction():
        _token, secret = tokens.create(owner, name=kwargs.pop("name", "MES line 4"), **kwargs)
    return secret


def ask(client, secret: str | None, **params):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return client.get(URL, query_string=params, headers=headers)


def actor_of(event: AuditEvent) -> AuditTransaction:
    return db.session.get(AuditTransaction, event.transaction_id)


@pytest.fixture
def p(make_user):
    people = setup_people(make_user)
    hold([people.operator], people.job_function_id)
    return people


@pytest.fixture
def sop(p):
    """SOP-QA-001 revision 1.0 in force; Otto Operator trained on it one hour after it became effective."""
    document = new_document(p)
    revision = effective_revision(p, document)
    clock.freeze(clock.now_utc() + timedelta(hours=1))
    assignment = train(p.operator, revision)
    clock.freeze(clock.now_utc() + timedelta(hours=1))
    return document, revision, assignment


@pytest.fixture
def supervisor_token(p):
    """Sam Supervisor holds training.view_team: the MES asks on his behalf."""
    return new_token(p.reviewer)


# --- the answer ------------------------------------------------------------------------------------------------------


def test_a_trained_operator_is_qualified_and_an_untrained_one_is_not(app, client, p, make_user):
    newcomer = make_user("nina.new", roles={"operator"}, full_name="Nina New")
    hold([newcomer], p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    clock.freeze(clock.now_utc() + timedelta(hours=1))
    assignment = train(p.operator, revision)
    secret = new_token(p.reviewer)

    trained = ask(client, secret, user="otto.operator", document="SOP-QA-001")
    assert trained.status_code == 200
    assert trained.mimetype == "application/json"
    assert trained.json == {
        "user": "otto.operator", "name": "Otto Operator", "user_active": True, "document": "SOP-QA-001",
        "title": "Cleaning of the mixer", "at": iso(clock.now_utc()), "qualified": True, "current_revision": "1.0",
        "trained_revision": "1.0", "completed_at": iso(assignment.completed_at), "reason": "Trained on revision 1.0.",
    }
    untrained = ask(client, secret, user="nina.new", document="SOP-QA-001").json
    assert (untrained["qualified"], untrained["current_revision"], untrained["trained_revision"],
            untrained["completed_at"]) == (False, "1.0", None, None)
    assert untrained["reason"] == "Not trained on SOP-QA-001 revision 1.0."


def test_user_and_document_match_whatever_their_case(app, client, p, sop, supervisor_token):
    response = ask(client, supervisor_token, user="Otto.Operator", document="sop-qa-001")
    assert response.status_code == 200
    assert (response.json["user"], response.json["document"], response.json["qualified"]) == \
        ("otto.operator", "SOP-QA-001", True)


def test_the_point_in_time_answer_is_what_it_was_then(app, client, p, sop, supervisor_token):
    document, first, assignment = sop
    before_training = assignment.completed_at - timedelta(minutes=1)
    second = approved_revision(p, document, effective_on=clock.now_utc().date() + timedelta(days=1))
    clock.freeze(clock.now_utc() + timedelta(days=1))
    from qms.documents import services

    run(services.release_due, clock.now_utc().date())

    now = ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001").json
    assert (now["qualified"], now["current_revision"], now["trained_revision"]) == (False, second.label, "1.0")
    then = ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001",
               at=iso(assignment.completed_at + timedelta(minutes=1))).json
    assert (then["qualified"], then["current_revision"], then["trained_revision"]) == (True, "1.0", "1.0")
    assert then["at"] == iso(assignment.completed_at + timedelta(minutes=1))
    earlier = ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001", at=iso(before_training))
    assert earlier.json["qualified"] is False
    # any explicit offset is the same instant in UTC
    shifted = ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001", at="2025-03-03T12:00:00+02:00")
    assert shifted.json["at"] == "2025-03-03T10:00:00Z"


# --- refusals --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "parameter", "words"), [
    ({"document": "SOP-QA-001"}, "user", "Parameter 'user' is required"),
    ({"user": "otto.operator"}, "document", "Parameter 'document' is required"),
    ({"user": "otto.operator", "document": "SOP-QA-001", "at": "yesterday"}, "at", "ISO 8601"),
    ({"user": "otto.operator", "document": "SOP-QA-001", "at": "2025-03-03T10:00:00"}, "at", "with its zone"),
    ({"user": "otto.operator", "document": "SOP-QA-001", "at": "2099-01-01T00:00:00Z"}, "at", "future"),
])
def test_a_missing_or_malformed_parameter_is_a_400_naming_it(app, client, p, sop, supervisor_token, params, parameter,
                                                             words):
    response = ask(client, supervisor_token, **params)
    assert response.status_code == 400
    assert response.json["parameter"] == parameter
    assert words in response.json["message"]
    assert "qualified" not in response.json


def test_an_unknown_user_or_document_is_a_404_saying_which(app, client, p, sop, supervisor_token):
    nobody = ask(client, supervisor_token, user="nobody", document="SOP-QA-001")
    assert (nobody.status_code, nobody.json["message"]) == (404, "No user named 'nobody'.")
    no_doc = ask(client, supervisor_token, user="otto.operator", document="SOP-XX-999")
    assert (no_doc.status_code, no_doc.json["message"]) == (404, "No document numbered 'SOP-XX-999'.")


def test_without_a_token_the_answer_is_401_and_the_refusal_is_recorded(app, client, p, sop):
    response = ask(client, None, user="otto.operator", document="SOP-QA-001")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="Attest"'
    assert response.json["error"] == "missing_token"
    assert "qualified" not in response.json
    [refused] = events("api.refused")
    assert json.loads(refused.detail)["reason"] == "missing"
    tx = actor_of(refused)
    assert (tx.user_id, tx.channel, tx.printed_name) == (None, "api", "anonymous API client")


def test_an_invented_token_is_refused_and_only_its_prefix_is_recorded(app, client, p, sop):
    forged = tokens.PREFIX + "x" * 43
    response = ask(client, forged, user="otto.operator", document="SOP-QA-001")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    [refused] = events("api.refused")
    assert json.loads(refused.detail) == {"reason": "unknown", "token": forged[:10], "method": "GET", "path": URL}
    assert forged not in refused.detail


def test_a_session_cookie_is_no_credential_for_the_api(app, client, p, sop):
    assert login(client, p.reviewer).status_code == 302
    response = ask(client, None, user="otto.operator", document="SOP-QA-001")
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert actor_of(events("api.refused")[0]).user_id is None  # not attributed to the logged-in browser user


def test_a_token_in_the_address_is_refused_and_not_used(app, client, p, sop, supervisor_token):
    response = client.get(URL, query_string={"user": "otto.operator", "document": "SOP-QA-001",
                                             "access_token": supervisor_token})
    assert response.status_code == 400
    assert response.json["error"] == "token_in_url"
    assert "revoke it" in response.json["message"]
    assert events("api.request") == []


def test_a_revoked_token_stops_working_at_once(app, client, p, sop):
    secret = new_token(p.reviewer)
    assert ask(client, secret, user="otto.operator", document="SOP-QA-001").status_code == 200
    with transaction():
        tokens.revoke(tokens.resolve(secret), actor=p.reviewer)
    response = ask(client, secret, user="otto.operator", document="SOP-QA-001")
    assert response.status_code == 401
    assert "revoked" in response.json["message"]
    [refused] = events("api.refused", p.reviewer)  # about the owner, not attributed to them
    assert json.loads(refused.detail)["reason"] == "revoked"
    assert actor_of(refused).user_id is None


def test_an_expired_token_stops_working_on_its_expiry_date(app, client, p, sop):
    secret = new_token(p.reviewer, expires_on=clock.now_utc().date() + timedelta(days=1))
    assert ask(client, secret, user="otto.operator", document="SOP-QA-001").status_code == 200
    clock.freeze(clock.now_utc() + timedelta(days=1))
    response = ask(client, secret, user="otto.operator", document="SOP-QA-001")
    assert response.status_code == 401
    assert "expired" in response.json["message"]


def test_a_deactivated_owners_token_stops_working(app, client, p, sop, make_user):
    secret = new_token(p.reviewer)
    assert ask(client, secret, user="otto.operator", document="SOP-QA-001").status_code == 200
    admin = make_user("ada.admin", roles={"system_admin"})
    with transaction(reason="Left the company"):
        auth_services.deactivate_account(p.reviewer, actor=admin)
    response = ask(client, secret, user="otto.operator", document="SOP-QA-001")
    assert response.status_code == 401
    assert "revoked" in response.json["message"]  # deactivation revokes every token of the person
    db.session.expire_all()
    assert [t.state for t in tokens.tokens_of(p.reviewer.id)] == ["Revoked"]
    with transaction(reason="Rehired"):
        auth_services.reactivate_account(db.session.get(type(p.reviewer), p.reviewer.id))
    assert ask(client, secret, user="otto.operator", document="SOP-QA-001").status_code == 401


def test_the_api_answers_json_for_unknown_paths_and_methods(app, client):
    for response, status in ((client.get("/api/v1/no-such-thing"), 404), (client.post(URL), 405)):
        assert response.status_code == status
        assert response.is_json and response.json["message"]
        assert response.headers["Cache-Control"] == "no-store"


# --- who may ask -----------------------------------------------------------------------------------------------------


def test_an_operator_may_ask_about_themself_but_not_about_others(app, client, p, sop, make_user):
    other = make_user("olga.operator", roles={"operator"})
    secret = new_token(p.operator)
    own = ask(client, secret, user="otto.operator", document="SOP-QA-001")
    assert (own.status_code, own.json["qualified"]) == (200, True)
    others = ask(client, secret, user=other.username, document="SOP-QA-001")
    assert others.status_code == 403
    assert others.json["permission"] == "training.view_team"
    unknown = ask(client, secret, user="nobody", document="SOP-QA-001")
    assert unknown.status_code == 403  # who exists is not revealed to someone who may not ask


def test_an_administrator_without_training_permissions_learns_nothing(app, client, p, sop, make_user):
    admin = make_user("ada.admin", roles={"system_admin"})
    response = ask(client, new_token(admin), user="ada.admin", document="SOP-QA-001")
    assert response.status_code == 403
    assert response.json["permission"] == "training.view_own"


# --- the audit trail -------------------------------------------------------------------------------------------------


def test_every_request_with_a_token_is_an_audit_event_of_its_owner(app, client, p, sop, supervisor_token):
    ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001")
    ask(client, supervisor_token, user="nobody", document="SOP-QA-001")
    answered, refused = events("api.request", p.reviewer)
    assert json.loads(answered.detail) == {
        "token": supervisor_token[:10], "token_name": "MES line 4", "method": "GET", "path": URL, "status": 200,
        "user": "otto.operator", "document": "SOP-QA-001", "qualified": True, "current_revision": "1.0",
        "trained_revision": "1.0"}
    assert json.loads(refused.detail)["status"] == 404
    for event in (answered, refused):
        tx = actor_of(event)
        assert (tx.user_id, tx.username, tx.printed_name, tx.channel) == \
            (p.reviewer.id, "sam.supervisor", "Sam Supervisor", "api")
        assert tx.chain_seq is not None  # sealed into the hash chain
        assert supervisor_token not in event.detail
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.event_type.in_(["api.request", "api.refused"]))) == 2


def test_responses_are_json_and_never_cached(app, client, p, sop, supervisor_token):
    for response in (ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001"),
                     ask(client, None, user="otto.operator", document="SOP-QA-001"),
                     ask(client, supervisor_token, user="otto.operator")):
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers


# --- rate limits -----------------------------------------------------------------------------------------------------


class TestRateLimits:
    @pytest.fixture
    def app_config(self):
        return {"ATTEST_API_REFUSAL_RATE_LIMIT": "3 per minute", "ATTEST_API_RATE_LIMIT": "6 per minute"}

    def test_a_flood_of_bad_tokens_is_stopped_before_it_fills_the_audit_trail(self, app, client, p):
        statuses = [ask(client, tokens.PREFIX + f"forged{i}", user="a", document="b").status_code for i in range(6)]
        assert statuses == [401, 401, 401, 429, 429, 429]
        assert len(events("api.refused")) == 3
        limited = ask(client, None, user="a", document="b")
        assert limited.json["error"] == "rate_limited"
        assert limited.headers["Retry-After"] == "60"

    def test_answered_requests_share_a_wider_limit(self, app, client, p, supervisor_token):
        statuses = [ask(client, supervisor_token, user="otto.operator", document="SOP-QA-001").status_code
                    for _ in range(7)]
        assert statuses == [404] * 6 + [429]  # the document does not exist: answered (and audited) all the same
        assert len(events("api.request")) == 6


# --- the description -------------------------------------------------------------------------------------------------


def test_the_openapi_description_lists_the_parameters_the_endpoint_reads(app, client):
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/qualification"]["get"]
    assert {(q["name"], q["required"]) for q in operation["parameters"]} == \
        {("user", True), ("document", True), ("at", False)}
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "429"}
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
