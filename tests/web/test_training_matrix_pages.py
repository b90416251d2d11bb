"""The coordinator's pages: the matrix grid and cell editor, gap analysis, manual and bulk assignment, and the held
release with its signed QA override, through the real pages (CSRF, permissions, messages)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from core.testing.pages import alerts, field_errors
from features.support.documents import (
    approved_revision,
    effective_revision,
    hold,
    new_document,
    run,
)
from qms.documents import services
from qms.documents.models import EFFECTIVE, RELEASE_WHEN_TRAINED
from qms.documents.publish import item_of, subject_of
from testkit.plugin import PASSWORD, login, post_form, totp_code
from training.models import OPEN, TrainingAssignment, TrainingRequirement

TAG_RE = re.compile(r"<[^>]+>")


def text_of(response) -> str:
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def client_for(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def _assignments(**where):
    db.session.expire_all()
    stmt = sa.select(TrainingAssignment).order_by(TrainingAssignment.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(TrainingAssignment, key) == value)
    return list(db.session.scalars(stmt))


def test_coordinator_adds_a_requirement_from_the_grid_and_holders_are_assigned(app, p, coordinator, make_user):
    operators = [make_user(f"op{i}", roles={"operator"}) for i in range(2)]
    hold(operators, p.job_function_id)
    document = new_document(p, audience_job_function_ids=[])
    revision = effective_revision(p, document)
    client = client_for(app, coordinator)
    grid = client.get("/training/matrix?q=SOP-QA-001")
    assert grid.status_code == 200 and "SOP-QA-001" in text_of(grid) and "OP-MIX" in text_of(grid)
    url = f"/training/matrix/{subject_of(document).id}/{p.job_function_id}"
    response = post_form(client, url, {"required": "y", "retrain": "major", "recurrence_months": "24",
                                       "days_allowed": "10"}, follow_redirects=True)
    assert "OP-MIX now requires SOP-QA-001; 2 people assigned." in alerts(response)
    assert {a.user_id for a in _assignments(item_id=item_of(revision).id)} == {u.id for u in operators}
    assert "Major" in text_of(client.get("/training/matrix?q=SOP-QA-001"))

    # a change needs a reason: refused with the field named, nothing changed
    response = post_form(client, url, {"required": "y", "retrain": "every", "recurrence_months": "24",
                                       "days_allowed": "10"})
    assert response.status_code == 422
    assert any("reason for change is required" in e for e in field_errors(response))
    db.session.expire_all()
    assert db.session.scalar(sa.select(TrainingRequirement.retrain)) == "major"

    # removing it cancels the open training it created
    response = post_form(client, url, {"retrain": "every", "reason": "Mixers moved to SOP-QA-002"},
                         follow_redirects=True)
    assert "OP-MIX no longer requires SOP-QA-001; 2 open assignments cancelled." in alerts(response)
    assert {a.status for a in _assignments(item_id=item_of(revision).id)} == {"cancelled"}


def test_bad_matrix_values_are_refused_with_the_field_and_rule(app, p, coordinator):
    document = new_document(p, audience_job_function_ids=[])
    client = client_for(app, coordinator)
    response = post_form(client, f"/training/matrix/{subject_of(document).id}/{p.job_function_id}",
                         {"required": "y", "retrain": "every", "recurrence_months": "0"})
    assert response.status_code == 422
    assert "Retrain every (months): Retrain every must be 1 to 120 months (or empty)." in field_errors(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrainingRequirement)) == 0


def test_operators_and_authors_cannot_reach_the_coordinator_pages(app, p):
    for user in (p.operator, p.author):
        client = client_for(app, user)
        for url in ("/training/matrix", "/training/gaps", "/training/assign"):
            assert client.get(url).status_code == 403, (user.username, url)


def test_bulk_assignment_by_job_function_and_list_skips_people_with_open_training(app, p, coordinator, make_user):
    document = new_document(p, audience_job_function_ids=[])
    revision = effective_revision(p, document)
    mixers = [make_user(f"mixer{i}", roles={"operator"}) for i in range(3)]
    hold(mixers, p.job_function_id)
    extra = make_user("extra.person", roles={"operator"})
    client = client_for(app, coordinator)
    due = (clock.now_utc().date() + timedelta(days=5)).isoformat()
    form = {"document": "sop-qa-001", "job_function_id": str(p.job_function_id), "site_id": "0",
            "department_id": "0", "usernames": "extra.person", "due_on": due,
            "reason": "Refresher after deviation DEV-2025-0012"}
    response = post_form(client, "/training/assign", form, follow_redirects=True)
    assert f"4 people assigned SOP-QA-001 revision 1.0, due {due}." in alerts(response)
    rows = _assignments(item_id=item_of(revision).id)
    assert {a.user_id for a in rows} == {u.id for u in [*mixers, extra]}
    assert {(a.source_type, a.assigned_reason, a.cycle) for a in rows} == {
        ("manual", "Refresher after deviation DEV-2025-0012", 0)}
    response = post_form(client, "/training/assign", form, follow_redirects=True)
    assert any(m.startswith("0 people assigned") and "4 already had open training" in m for m in alerts(response))
    assert len(_assignments(item_id=item_of(revision).id)) == 4


def test_bulk_assignment_errors_name_the_field_and_write_nothing(app, p, coordinator):
    effective_revision(p, new_document(p, audience_job_function_ids=[]))
    client = client_for(app, coordinator)
    base = {"document": "SOP-QA-001", "site_id": "0", "department_id": "0", "job_function_id": "0",
            "due_on": clock.now_utc().date().isoformat(), "reason": "Refresher"}
    cases = [({"usernames": "nobody.here"}, "Unknown username(s): nobody.here."),
             ({"usernames": ""}, "Choose who to assign"),
             ({"usernames": "otto.operator", "document": "SOP-NOPE-9"}, "No document numbered 'SOP-NOPE-9'."),
             ({"usernames": "otto.operator", "due_on": "2020-01-01"}, "Due date cannot be in the past")]
    for change, message in cases:
        response = post_form(client, "/training/assign", {**base, **change})
        assert response.status_code == 422, change
        assert any(message in e for e in field_errors(response)), (change, field_errors(response))
    assert _assignments() == []


def test_a_completed_person_assigned_again_trains_in_a_new_cycle(app, p, coordinator):
    from features.support.documents import train

    document = new_document(p, audience_job_function_ids=[])
    revision = effective_revision(p, document)
    client = client_for(app, coordinator)
    form = {"document": "SOP-QA-001", "site_id": "0", "department_id": "0", "job_function_id": "0",
            "usernames": "otto.operator", "due_on": clock.now_utc().date().isoformat(), "reason": "First"}
    post_form(client, "/training/assign", form)
    train(p.operator, revision)
    clock.freeze(clock.now_utc() + timedelta(days=30))
    client = client_for(app, coordinator)  # a month later: a new session
    post_form(client, "/training/assign", {**form, "due_on": clock.now_utc().date().isoformat(),
                                           "reason": "Retrain after audit finding"})
    rows = _assignments(user_id=p.operator.id)
    assert [(a.cycle, a.status) for a in rows] == [(0, "completed"), (1, OPEN)]
    train(p.operator, revision)  # the retraining is a second "Read and understood" signature on the same revision
    rows = _assignments(user_id=p.operator.id)
    assert [(a.cycle, a.status) for a in rows] == [(0, "completed"), (1, "completed")]
    assert rows[0].signature_id != rows[1].signature_id


def test_gap_analysis_lists_the_four_kinds_of_gap(app, p, coordinator, make_user):
    from core.org import JobFunction

    with transaction():
        db.session.add(JobFunction(code="QC-LAB", name="QC analyst", department_id=p.department_id))
    new_document(p, number="SOP-QA-002")  # required of OP-MIX, never effective
    late = make_user("late.op", roles={"operator"}, full_name="Lola Late")
    hold([late], p.job_function_id)
    revision = approved_revision(p, new_document(p), effective_on=clock.now_utc().date())
    run(services.release_due, clock.now_utc().date())
    assert revision.status == EFFECTIVE
    clock.freeze(clock.now_utc() + timedelta(days=3))
    page = text_of(client_for(app, coordinator).get("/training/gaps"))
    assert "QC-LAB — QC analyst" in page
    assert "SOP-QA-002" in page and "no effective revision" in page
    assert "Otto Operator (otto.operator)" in page  # holds no job function
    assert "Lola Late (late.op) 1" in page


def test_qa_overrides_a_held_release_from_the_revision_page(app, p, make_user):
    waiting = make_user("wait.op", roles={"operator"}, full_name="Walter Waiting")
    hold([waiting], p.job_function_id)
    document = new_document(p)
    run(services.update_document_metadata, document, actor=p.qa, release_policy=RELEASE_WHEN_TRAINED,
        audit_reason="Critical procedure")
    revision = approved_revision(p, document, effective_on=clock.now_utc().date())
    run(services.release_due, clock.now_utc().date())
    client = client_for(app, p.qa)
    page_url = f"/documents/{document.id}/revisions/{revision.id}"
    page = text_of(client.get(page_url))
    assert "Release held until trained." in page and "Walter Waiting" in page
    url = f"{page_url}/release-override"
    sign_page = client.get(url)
    expected = re.search(r'name="expected_version"[^>]*value="(\d+)"', sign_page.get_data(as_text=True)).group(1)
    response = post_form(client, url, {"meaning": "Approved with open training", "expected_version": expected,
                                       "reason": "Walter is on leave until Monday", "password": PASSWORD,
                                       "totp_code": totp_code(p.qa)}, follow_redirects=True)
    assert response.status_code == 200, text_of(response)
    db.session.expire_all()
    db.session.refresh(revision)
    assert revision.status == EFFECTIVE
    assert "Walter Waiting (wait.op)" in revision.release_override_note
    assert "Released with open training" in text_of(client.get(page_url))
    assert _assignments(user_id=waiting.id)[0].status == OPEN


def test_a_lost_race_on_the_same_assignment_is_a_clear_409_and_writes_nothing(app, p, coordinator, monkeypatch):
    """Two coordinators assigning the same people at the same moment: the database refuses the second set of
    duplicates; that coordinator sees a plain message, not an error page, and nothing of theirs is saved."""
    from training import engine

    revision = effective_revision(p, new_document(p, audience_job_function_ids=[]))
    client = client_for(app, coordinator)
    form = {"document": "SOP-QA-001", "site_id": "0", "department_id": "0", "job_function_id": "0",
            "usernames": "otto.operator", "due_on": clock.now_utc().date().isoformat(), "reason": "Refresher"}
    post_form(client, "/training/assign", form)
    monkeypatch.setattr(engine, "latest_cycles", lambda *_a, **_k: {})  # as if the other request were not seen
    response = post_form(client, "/training/assign", {**form, "reason": "Refresher again"})
    assert response.status_code == 409
    assert "Someone else saved the same change at the same moment" in text_of(response)
    assert [a.assigned_reason for a in _assignments(item_id=item_of(revision).id)] == ["Refresher"]
