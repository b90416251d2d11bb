"""The password check (argon2, about 240 ms of CPU on purpose) of a login or a signature runs before the unit of work
opens, never inside it: on SQLite the unit of work holds the database's write lock from its first statement, and every
other request that writes (another operator's signature, an assignment being opened) would wait for the check.

Each test wraps argon2's own verification and notes, at the moment it runs, whether a unit of work is open and (on
SQLite) whether another connection could take the write lock at once."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import make_url

from core.auth import passwords
from core.db import db
from core.testing.pages import alerts, events
from signatures.models import Signature
from testkit.plugin import PASSWORD, is_postgres, login, post_form
from tests.integration.stress_helpers import sqlite_writable
from tests.web.test_read_and_sign import assigned, client_for, fresh_assignment, sign  # noqa: F401 (fixture)
from training.models import COMPLETED, OPEN


@pytest.fixture
def checks(app, monkeypatch):
    """Every argon2 verification, as (inside a unit of work?, could another connection write at that moment?)."""
    seen: list[tuple[bool, bool]] = []
    real = passwords._argon2_verify

    def watched(password_hash: str, password: str) -> bool:
        seen.append((bool(db.session.info.get("in_unit_of_work")), _another_connection_can_write(app)))
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "_argon2_verify", watched)
    return seen


def _another_connection_can_write(app) -> bool:
    if is_postgres():
        return True  # no database-wide write lock; the unit-of-work flag is what tells there
    return sqlite_writable(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database)


OUTSIDE = (False, True)


def test_a_login_checks_the_password_before_its_unit_of_work_and_once(app, client, make_user, checks):
    user = make_user("wanda.writer", roles={"operator"}, totp=False)
    assert login(client, user).status_code == 302
    assert checks == [OUTSIDE]
    assert len(events("login.success", user)) == 1


def test_a_wrong_password_and_an_unknown_name_are_checked_outside_it_too_and_still_count(app, client, make_user,
                                                                                        checks):
    user = make_user("wanda.writer", roles={"operator"}, totp=False)
    assert login(client, user, password="not the password").status_code == 401
    unknown = post_form(client, "/login", {"username": "no.such.person", "password": PASSWORD})
    assert unknown.status_code == 401
    assert checks == [OUTSIDE, OUTSIDE]  # the unknown name spends the time of a check, outside too
    db.session.expire_all()
    assert user.security.failed_attempts == 1
    assert [json.loads(e.detail)["reason"] for e in events("login.failure")] == ["wrong password", "unknown username"]


def test_a_signature_checks_the_password_before_its_unit_of_work(app, p, assigned, checks):  # noqa: F811
    assignment, _revision = assigned
    client = client_for(app, p.operator)
    client.get(f"/my-training/{assignment.id}")
    checks.clear()  # the login's own check
    response = sign(client, p.operator, assignment.id)
    assert response.status_code == 302
    assert checks == [OUTSIDE]
    assert fresh_assignment(assignment.id).status == COMPLETED


def test_a_wrong_signing_password_is_checked_outside_it_and_refused_as_before(app, p, assigned, checks):  # noqa: F811
    assignment, _revision = assigned
    client = client_for(app, p.operator)
    client.get(f"/my-training/{assignment.id}")
    checks.clear()
    signatures = db.session.query(Signature).count()
    response = sign(client, p.operator, assignment.id, password="not-the-password")
    assert response.status_code == 401 and any("Signature refused" in a for a in alerts(response))
    assert checks == [OUTSIDE]
    assert db.session.query(Signature).count() == signatures
    assert fresh_assignment(assignment.id).status == OPEN
    assert len(events("signature.failure", p.operator)) == 1


def test_a_password_changed_between_the_check_and_the_unit_of_work_is_checked_again(app, make_user):
    """The answer is kept for the hash it was checked against: a new hash in between is verified afresh."""
    user = make_user("wanda.writer", roles={"operator"}, totp=False)
    with app.test_request_context():
        old_hash = user.security.password_hash
        passwords.precheck(old_hash, PASSWORD)
        new_hash = passwords.hash_password("Another-Password-42")
        assert passwords.verify_password(new_hash, PASSWORD) is False
        assert passwords.verify_password(old_hash, PASSWORD) is True  # the answer kept, used once
        assert passwords.verify_password(old_hash, "wrong") is False
