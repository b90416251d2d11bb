"""Hostile requests (docs PART11 section 3, adversarial tests 4, 5, 8, 10, 13 and 14): each is refused, changes
nothing, and is recorded where it is a security event.

Only what other tests do not already show is here; each section names the tests that cover the rest.
"""

from __future__ import annotations

import html
import json
import re

import pyotp
import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditEvent, AuditTransaction
from core.db import db
from core.testing.pages import alerts, count, events, fresh
from features.support.documents import effective_revision, new_document, new_revision, route, submit
from features.support.documents import review_as as reviewed_by
from qms.documents.models import Revision
from signatures.models import Signature
from testkit.plugin import PASSWORD, csrf_token, login, post_form, totp_code
from tests.web.route_examples import _example_ids

COOKIE = "attest_session"
CSRF_REFUSED = "Form expired or not sent from Attest"
EXPECTED_RE = re.compile(r'<input[^>]*name="expected_version"[^>]*value="(\d*)"')


def written_since(transactions: int) -> list[str]:
    """The event types of the audit transactions written after the first `transactions` (a version row counts as
    'record change')."""
    db.session.expire_all()
    rows = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.id).offset(transactions)).all()
    found = []
    for tx in rows:
        types = db.session.scalars(sa.select(AuditEvent.event_type).where(AuditEvent.transaction_id == tx.id)).all()
        found += list(types) if types else ["record change"]
    return found


def signatures_on(record_type: str, record_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Signature).where(
        Signature.record_type == record_type, Signature.record_id == record_id))


def session_data(app, client) -> dict:
    """What the signed session cookie holds (the client keeps it; the server only checks its signature)."""
    cookie = client.get_cookie(COOKIE)
    return dict(app.session_interface.get_signing_serializer(app).loads(cookie.value)) if cookie else {}


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def planted(app, value: str):
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def revision_url(revision: Revision, suffix: str = "") -> str:
    return f"/documents/{revision.document_id}/revisions/{revision.id}{suffix}"


def signing_form(client, url: str) -> dict[str, str]:
    """The hidden fields of a signing dialog, as the browser would send them back."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    body = page.get_data(as_text=True)
    meaning = re.search(r'<input type="hidden" name="meaning" value="([^"]+)"', body).group(1)
    return {"csrf_token": csrf_token(client, url), "meaning": html.unescape(meaning),
            "expected_version": EXPECTED_RE.search(body).group(1), "comment": ""}


# --- CSRF (adversarial test 13) --------------------------------------------------------------------------------------
# Covered in tests/web/test_sessions_and_csrf.py: logout and an account deactivation without a token, with a forged
# token or with another session's token are refused (400) and change nothing; the login form needs a token. Here:
# signing, completing training and granting a role, and the refusal recorded as a security event.


def _approve(app, users, example):
    path = f"/documents/{example['document_id']}/revisions/{example['revision_id']}/approve"
    data = {"password": PASSWORD, "totp_code": "123456", "meaning": "Approved", "expected_version": "1"}
    return "qa_approver", path, data, lambda: signatures_on("qms_document_revision", example["revision_id"])


def _read_and_sign(app, users, example):
    from training.models import TrainingAssignment

    own = app.extensions["test_example_assignments"][users["operator"].id]
    data = {"password": PASSWORD, "totp_code": "123456", "meaning": "Read and understood"}

    def state():
        db.session.expire_all()
        assignment = db.session.get(TrainingAssignment, own)
        return assignment.status, signatures_on("qms_document_revision", assignment.item.source_id)

    return "operator", f"/my-training/{own}/sign", data, state


def _grant_role(app, users, example):
    target = users["operator"]
    data = {"username": target.username, "full_name": target.full_name, "email": target.email,
            "roles": ["operator", "qa_approver"], "site_id": "", "department_id": "", "supervisor_id": "",
            "timezone": "", "reason": "Cross-site request"}
    return "system_admin", f"/admin/users/{target.id}/edit", data, lambda: sorted(fresh(target).role_codes)


@pytest.mark.parametrize("forged_request", [_approve, _read_and_sign, _grant_role],
                         ids=["approve a revision", "complete training", "grant a role"])
def test_a_state_changing_post_without_a_valid_csrf_token_is_refused_recorded_and_changes_nothing(
        app, users, forged_request):
    example = _example_ids(app, users)
    role, path, data, state = forged_request(app, users, example)
    user = users[role]
    client = app.test_client()
    assert login(client, user).status_code == 302
    before, transactions = state(), count(AuditTransaction)

    other_session = csrf_token(app.test_client(), "/login")
    for token in (None, "forged-token", other_session):
        response = client.post(path, data=data if token is None else {**data, "csrf_token": token})
        assert response.status_code == 400, (token, response.status_code)
        assert CSRF_REFUSED in response.get_data(as_text=True)

    assert state() == before
    assert fresh(user).security.failed_attempts == 0  # the credentials in the forged form were never looked at
    assert written_since(transactions) == ["csrf.refused"] * 3
    refusals = [json.loads(e.detail) for e in events("csrf.refused", user)]
    assert [(r["method"], r["path"]) for r in refusals] == [("POST", path)] * 3
    assert all(r["reason"] for r in refusals)
    assert is_logged_in(client)


def test_an_anonymous_form_refused_for_its_csrf_token_is_not_recorded(app, users, client):
    """Nobody to attribute it to, and anyone could fill the audit trail with them (the login form is rate-limited)."""
    transactions = count(AuditTransaction)
    response = client.post("/login", data={"username": "operator", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 400
    assert count(AuditTransaction) == transactions


# --- session fixation (adversarial test 14) --------------------------------------------------------------------------
# Covered in tests/web/test_sessions_and_csrf.py: test_the_session_cookie_changes_at_login (password-only login: the
# cookie changes, a cookie planted before login is not logged in), test_a_new_login_ends_the_users_older_sessions and
# test_a_session_cookie_copied_before_a_password_change_stops_working. Here: the two-step login with a second
# factor, and the session identifier itself.


def test_every_step_of_a_two_factor_login_starts_a_new_session_and_planted_cookies_stay_anonymous(app, users):
    user = users["qa_approver"]
    client = app.test_client()
    client.get("/login")
    before_login = client.get_cookie(COOKIE).value
    response = post_form(client, "/login", {"username": user.username, "password": PASSWORD})
    assert response.headers["Location"].endswith("/login/code")
    password_step = client.get_cookie(COOKIE).value
    assert password_step != before_login
    assert "_user_id" not in session_data(app, client)  # not logged in until the second factor

    assert post_form(client, "/login/code", {"code": totp_code(user)}).status_code == 302
    first = session_data(app, client)
    assert first["_user_id"] == str(user.id) and first["_sid"]
    for value in (before_login, password_step):  # an attacker who planted or copied either holds no session
        assert not is_logged_in(planted(app, value))
    assert is_logged_in(client)

    # a new login and a password change (re-authentication) each start a session with a new identifier
    client = app.test_client()
    assert login(client, user).status_code == 302
    second = session_data(app, client)
    assert second["_sid"] != first["_sid"] and second["_nonce"] != first["_nonce"]
    response = post_form(client, "/account/password", {"current_password": PASSWORD,
                                                       "new_password": "Brand-New-Passphrase-42",
                                                       "confirm_password": "Brand-New-Passphrase-42"})
    assert response.status_code == 302
    third = session_data(app, client)
    assert third["_sid"] not in (first["_sid"], second["_sid"]) and third["_nonce"] != second["_nonce"]


# --- signing: replayed second-factor codes, another person's password (adversarial tests 4 and 5) ---------------------
# Covered: a replayed code at login, tests/web/test_totp.py::test_a_replayed_code_is_refused_and_audited and
# ::test_a_code_of_an_earlier_step_is_refused_after_a_later_one_was_used; a replayed code at signing, in the service,
# tests/integration/test_signatures.py::test_replayed_totp_code_is_refused; a proof of one user used for another,
# ::test_proof_of_one_user_cannot_be_used_to_sign_as_another. Here: the same through the pages.


@pytest.fixture
def in_review(p):
    """A revision in review with one reviewer (signed) and two approvers, QA `p.qa` and `p.qa2`."""
    revision = new_revision(p, new_document(p))
    route(p, revision, approvers=[p.qa, p.qa2])
    submit(p, revision)
    reviewed_by(p.reviewer, revision)
    return revision


def test_the_code_typed_at_login_cannot_be_replayed_to_sign(app, p, in_review):
    client = app.test_client()
    assert login(client, p.qa).status_code == 302
    used_at_login = pyotp.TOTP(p.qa.security.totp_secret).at(clock.now_utc())  # the clock is frozen: same step
    url = revision_url(in_review, "/approve")
    before = len(events("signature.failure", p.qa))

    response = client.post(url, data={**signing_form(client, url), "password": PASSWORD, "totp_code": used_at_login})
    assert response.status_code == 401
    assert any("not correct" in a for a in alerts(response)), alerts(response)
    assert signatures_on(in_review.signable_type, in_review.id) == 2  # authored, reviewed: nothing added
    assert fresh_revision(in_review).status == in_review.status
    assert len(events("totp.replay", p.qa)) == 1
    assert len(events("signature.failure", p.qa)) == before + 1
    assert fresh(p.qa).security.failed_attempts == 1


def test_signing_with_another_persons_password_fails_and_counts_toward_the_signed_in_persons_lockout(
        app, p, make_user, in_review):
    """The signer is always the logged-in person: a colleague's password and code (and fields naming the colleague)
    are checked against the logged-in person's account, never the colleague's."""
    colleague_password = "Colleague-Passphrase-77"
    colleague = make_user("quincy.colleague", roles={"qa_approver"}, password=colleague_password,
                          full_name="Quincy Colleague")
    client = app.test_client()
    assert login(client, p.qa).status_code == 302
    url = revision_url(in_review, "/approve")
    impersonation = {"password": colleague_password, "username": colleague.username, "signer_id": str(colleague.id),
                     "user_id": str(colleague.id)}

    threshold = app.config["ATTEST_LOCKOUT_THRESHOLD"]
    for attempt in range(1, threshold + 1):
        response = client.post(url, data={**signing_form(client, url), **impersonation,
                                          "totp_code": totp_code(colleague)})
        assert response.status_code == (401 if attempt < threshold else 302), attempt
        assert fresh(p.qa).security.failed_attempts == attempt
    assert fresh(p.qa).security.locked
    assert response.headers["Location"] == "/login"
    assert not is_logged_in(client)
    assert signatures_on(in_review.signable_type, in_review.id) == 2
    assert len(events("signature.failure", p.qa)) == threshold
    assert len(events("account.locked", p.qa)) == 1
    assert fresh(colleague).security.failed_attempts == 0 and not fresh(colleague).security.locked
    assert events("signature.failure", colleague) == []
    assert login(app.test_client(), colleague, colleague_password).status_code == 302


def fresh_revision(revision: Revision) -> Revision:
    db.session.expire_all()
    return db.session.get(Revision, revision.id)


# --- editing an effective revision (adversarial test 8) --------------------------------------------------------------
# Covered in the service: tests/integration/test_documents_lifecycle.py::test_content_is_frozen_once_the_revision_
# leaves_draft and ::test_a_direct_orm_edit_of_submitted_content_without_a_reason_is_refused. Here: the edit route.


def test_the_edit_route_of_an_effective_revision_refuses_and_writes_nothing(app, p):
    revision = effective_revision(p, new_document(p))
    content, digest, version = revision.content_markdown, revision.content_sha256, revision.row_version
    client = app.test_client()
    assert login(client, p.author).status_code == 302
    url = revision_url(revision, "/edit")
    transactions = count(AuditTransaction)

    response = post_form(client, url, {"change_summary": "Quietly changed", "reason": "Nobody will notice",
                                       "content_markdown": "# Purpose\n\nSkip the cleaning.\n",
                                       "expected_version": str(version)})
    assert response.status_code == 409
    assert any("edit" in a.lower() for a in alerts(response)), alerts(response)
    for method in ("PUT", "PATCH", "DELETE"):
        assert client.open(revision_url(revision), method=method).status_code == 405

    after = fresh_revision(revision)
    assert (after.content_markdown, after.content_sha256, after.row_version) == (content, digest, version)
    # refused for the record's state (the author holds documents.author): the attempt is recorded as a security event
    # with what the author was told, and nothing else is written
    assert written_since(transactions) == ["action.refused"]
    refused = json.loads(events("action.refused", p.author)[-1].detail)
    assert (refused["method"], refused["path"], refused["status"], refused["refusal"]) == (
        "POST", url, 409, "InvalidTransition")
    assert refused["message"] in " ".join(alerts(response))


# --- the audit trail through the web (adversarial test 10) -----------------------------------------------------------
# The database refuses UPDATE and DELETE of audit rows whatever the route: tests/integration/test_audit_guards.py
# (::test_audit_events_refuse_update_and_delete, ::test_sealed_audit_transactions_refuse_update_and_delete,
# ::test_version_tables_refuse_update_and_delete) and, for signatures,
# tests/integration/test_signatures.py::test_database_refuses_raw_sql_update_or_delete_of_signatures.


def test_no_route_accepts_put_patch_or_delete(app):
    writable = {rule.endpoint: sorted(rule.methods - {"GET", "HEAD", "OPTIONS", "POST"})
                for rule in app.url_map.iter_rules() if rule.methods - {"GET", "HEAD", "OPTIONS", "POST"}}
    assert writable == {}


def test_the_audit_pages_are_read_only(app, users):
    auditor = users["auditor"]
    client = app.test_client()
    assert login(client, auditor).status_code == 302
    audit_endpoints = {rule.endpoint: rule.methods for rule in app.url_map.iter_rules()
                       if rule.endpoint.startswith("audit.")}
    assert audit_endpoints and all(methods <= {"GET", "HEAD", "OPTIONS"} for methods in audit_endpoints.values())

    page = client.get("/audit/")
    assert page.status_code == 200
    posting_forms = re.findall(r'<form[^>]*method="post"[^>]*>', page.get_data(as_text=True), re.I)
    assert all('action="/logout"' in form for form in posting_forms), posting_forms  # only the log-out button
    transactions = count(AuditTransaction)
    token = csrf_token(client, "/account")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/audit/", "/audit/export.csv", f"/audit/?transaction={transactions}"):
            response = client.open(path, method=method, data={"csrf_token": token})
            assert response.status_code == 405, (method, path)
            assert "never edited or deleted" in response.get_data(as_text=True)
    assert count(AuditTransaction) == transactions
