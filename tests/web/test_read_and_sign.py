"""Read-and-sign through the pages: the trainee sees the assignment made by the approval, opens the exact revision,
and signs it "Read and understood" (password + code); refusals write nothing, and nobody sees another's training."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from core.testing.pages import alerts, count, events
from features.support.documents import approved_revision, new_document, setup_people
from signatures.models import READ_AND_UNDERSTOOD, Signature
from testkit.plugin import PASSWORD, csrf_token, login, totp_code
from training.models import COMPLETED, OPEN, TrainingAssignment, UserJobFunction

EXPECTED_RE = re.compile(r'<input[^>]*name="expected_version"[^>]*value="(\d*)"')
TAG_RE = re.compile(r"<[^>]+>")


def text_of(response) -> str:
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def fresh_assignment(assignment_id: int) -> TrainingAssignment:
    db.session.expire_all()
    return db.session.get(TrainingAssignment, assignment_id)


@pytest.fixture
def assigned(app, p):
    """The operator holds the audience job function; approving a revision assigns it to them."""
    with transaction():
        db.session.add(UserJobFunction(user_id=p.operator.id, job_function_id=p.job_function_id,
                                       valid_from=clock.now_utc().date() - timedelta(days=30)))
    revision = approved_revision(p, new_document(p), effective_on=clock.now_utc().date() + timedelta(days=7),
                                 content="# Purpose\n\nClean the **mixer** daily.\n")
    assignment = db.session.scalar(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == p.operator.id))
    assert assignment is not None and assignment.item.source_id == revision.id
    return assignment, revision


def client_for(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def sign(client, user, assignment_id: int, *, password: str = PASSWORD):
    url = f"/my-training/{assignment_id}/sign"
    page = client.get(url)
    assert page.status_code == 200, text_of(page)[:2000]
    body = page.get_data(as_text=True)
    shown = EXPECTED_RE.search(body)
    assert shown, "the signing dialog carries the version of the record it shows"
    token = csrf_token(client, url)
    return client.post(url, data={"csrf_token": token, "password": password, "totp_code": totp_code(user),
                                  "meaning": READ_AND_UNDERSTOOD, "comment": "",
                                  "expected_version": shown.group(1)})


def test_operator_opens_and_signs_the_exact_revision_and_sees_it_in_the_history(app, p, assigned):
    assignment, revision = assigned
    client = client_for(app, p.operator)
    listing = client.get("/my-training/")
    assert listing.status_code == 200
    assert "SOP-QA-001 revision 1.0" in text_of(listing)
    assert "My training" in text_of(listing)

    page = client.get(f"/my-training/{assignment.id}")
    assert page.status_code == 200
    assert "<strong>mixer</strong>" in page.get_data(as_text=True)  # the rendered Markdown of the exact revision
    opened_at = fresh_assignment(assignment.id).opened_at
    assert opened_at is not None
    client.get(f"/my-training/{assignment.id}")
    assert fresh_assignment(assignment.id).opened_at == opened_at  # recorded once

    response = sign(client, p.operator, assignment.id)
    assert response.status_code == 302, text_of(response)[:2000]
    done = fresh_assignment(assignment.id)
    assert done.status == COMPLETED and done.completed_at is not None
    signature = db.session.get(Signature, done.signature_id)
    assert (signature.meaning, signature.record_type, signature.record_id, signature.record_version,
            signature.signer_id, signature.auth_method) == (
        READ_AND_UNDERSTOOD, "qms_document_revision", revision.id, "1.0", p.operator.id, "password+totp")

    history = text_of(client.get("/my-training/"))
    assert "Nothing to read and sign." in history
    assert f"Otto Operator — {READ_AND_UNDERSTOOD} — " in history
    assert "UTC" in history.split(READ_AND_UNDERSTOOD, 1)[1]
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_signing_before_opening_the_document_is_refused(app, p, assigned):
    assignment, _revision = assigned
    client = client_for(app, p.operator)
    signatures_before = count(Signature)
    response = sign(client, p.operator, assignment.id)
    assert response.status_code == 409
    assert any("Open the document first" in a for a in alerts(response))
    assert fresh_assignment(assignment.id).status == OPEN
    assert count(Signature) == signatures_before


def test_another_user_can_neither_open_nor_sign_someone_elses_assignment(app, p, assigned, make_user):
    assignment, _revision = assigned
    other = make_user("olga.operator", roles={"operator"}, full_name="Olga Operator")
    client = client_for(app, other)
    assert client.get(f"/my-training/{assignment.id}").status_code == 404
    assert client.get(f"/my-training/{assignment.id}/sign").status_code == 404
    token = csrf_token(client, "/my-training/")
    response = client.post(f"/my-training/{assignment.id}/sign",
                           data={"csrf_token": token, "password": PASSWORD, "totp_code": totp_code(other),
                                 "meaning": READ_AND_UNDERSTOOD})
    assert response.status_code == 404
    row = fresh_assignment(assignment.id)
    assert (row.opened_at, row.status) == (None, OPEN)
    assert "SOP-QA-001" not in text_of(client.get("/my-training/"))


def test_a_wrong_password_is_refused_with_401_and_writes_nothing(app, p, assigned):
    assignment, _revision = assigned
    client = client_for(app, p.operator)
    client.get(f"/my-training/{assignment.id}")
    signatures_before = count(Signature)
    failures_before = len(events("signature.failure", p.operator))
    response = sign(client, p.operator, assignment.id, password="not-the-password")
    assert response.status_code == 401
    assert any("Signature refused" in a for a in alerts(response))
    assert count(Signature) == signatures_before
    assert fresh_assignment(assignment.id).status == OPEN
    assert len(events("signature.failure", p.operator)) == failures_before + 1
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_overdue_training_is_listed_first_and_highlighted(app, p, assigned):
    assignment, _revision = assigned
    clock.freeze(clock.now_utc() + timedelta(days=10))
    client = client_for(app, p.operator)
    body = client.get("/my-training/").get_data(as_text=True)
    assert "list-group-item-danger" in body and "Overdue" in body


def test_completing_an_assignment_signs_its_own_revision_and_never_another(app, p, assigned):
    """Training on one revision never counts for another: completing an assignment signs exactly the revision its
    training item stands for, and leaves the training on another revision open."""
    from features.support.documents import prove, run
    from qms.documents.publish import item_of
    from training.read_and_sign import services as read_and_sign

    assignment, revision = assigned
    other = approved_revision(p, new_document(p, number="SOP-QA-002"))
    other_assignment = db.session.scalar(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id == p.operator.id, TrainingAssignment.item_id == item_of(other).id))
    run(read_and_sign.mark_opened, assignment, p.operator)
    signature = run(read_and_sign.complete, assignment, user=p.operator, proof=prove(p.operator),
                    expected_version=None)
    assert (signature.record_type, signature.record_id) == ("qms_document_revision", revision.id)
    assert fresh_assignment(assignment.id).status == COMPLETED
    assert fresh_assignment(other_assignment.id).status == OPEN
    assert revision.id != other.id

def test_the_approver_sees_the_training_impact_before_the_final_signature(app, make_user):
    from datetime import timedelta

    from core import clock
    from core.db import db, transaction
    from features.support.documents import new_document, new_revision, review_as, route, submit
    from testkit.plugin import login
    from training.models import UserJobFunction

    p = setup_people(make_user)
    trainees = [make_user(f"imp{i}", roles={"operator"}, full_name=f"Impact Person {i}") for i in range(2)]
    with transaction():
        for user in trainees:
            db.session.add(UserJobFunction(user_id=user.id, job_function_id=p.job_function_id,
                                           valid_from=clock.now_utc().date() - timedelta(days=1)))
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    review_as(p.reviewer, revision)
    client = app.test_client()
    assert login(client, p.qa).status_code == 302
    page = client.get(f"/documents/{revision.document_id}/revisions/{revision.id}/approve")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "2 person(s) will be assigned this revision" in text
    assert "OP-MIX 2" in text
    assert "Impact Person 0 (imp0)" in text and "Impact Person 1 (imp1)" in text


def test_the_documents_minimum_reading_time_is_enforced_before_signing(app, p, assigned):
    from qms.documents import services

    assignment, revision = assigned
    with transaction(reason="Long procedure: read it properly"):
        services.update_document_metadata(revision.document, actor=p.author, min_read_seconds=120)
    client = client_for(app, p.operator)
    assert client.get(f"/my-training/{assignment.id}").status_code == 200  # opened now
    response = sign(client, p.operator, assignment.id)
    assert response.status_code == 409
    assert any("at least 120 seconds of reading" in a for a in alerts(response))
    assert fresh_assignment(assignment.id).status == OPEN
    clock.freeze(clock.now_utc() + timedelta(seconds=121))
    response = sign(client, p.operator, assignment.id)
    assert response.status_code == 302, text_of(response)[:2000]
    assert fresh_assignment(assignment.id).status == "completed"
