"""Change control through the real pages (CSRF, permissions, messages): raising, editing, tasks, the signed steps,
the record page's chain change -> revisions -> training, and closure gated on training with the QA override."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import sqlalchemy as sa

from core import clock
from core.db import db
from core.testing.pages import alerts, field_errors
from features.support.documents import (
    approve_as,
    effective_revision,
    hold,
    new_document,
    review_as,
    route,
    run,
    submit,
    train,
)
from qms.change_control import services as cc
from qms.change_control.models import ChangeControl, ChangeTask
from qms.documents import services as docs
from qms.documents.models import Revision
from testkit.plugin import PASSWORD, post_form, totp_code
from tests.integration.test_change_control_lifecycle import (
    approved_change,
    fields,
    implement,
    new_change,
    owner,
    signed,
    version,
)
from tests.web.test_training_matrix_pages import client_for, text_of

__all__ = ["owner"]  # the fixture, shared with the lifecycle tests


def sign(client, url, user, **data):
    page = client.get(url)
    assert page.status_code == 200, text_of(page)
    expected = re.search(r'name="expected_version"[^>]*value="(\d+)"', page.get_data(as_text=True)).group(1)
    meaning = re.search(r'name="meaning" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return post_form(client, url, {"meaning": html.unescape(meaning), "expected_version": expected,
                                   "password": PASSWORD, "totp_code": totp_code(user), **data},
                     follow_redirects=True)


def test_raise_a_change_from_the_form_with_clear_field_errors(app, p, owner):
    document = new_document(p)
    client = client_for(app, owner)
    form = {"title": "", "description": "Add a checklist.", "justification": "Deviation follow-up",
            "change_type": "document", "risk_level": "low", "risk_rationale": "Document only",
            "owner_id": str(owner.id), "documents": [str(document.id)]}
    response = post_form(client, "/change-control/new", form)
    assert response.status_code == 422
    assert "Title: Title is required." in field_errors(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ChangeControl)) == 0

    response = post_form(client, "/change-control/new", {**form, "title": "Line clearance checklist"},
                         follow_redirects=True)
    number = f"CC-{clock.now_utc().year}-0001"
    assert f"{number} was raised in Draft." in alerts(response)
    page = text_of(response)
    assert "Line clearance checklist" in page and "SOP-QA-001" in page and "Not started yet" in page
    register = client.get("/change-control/")
    change = db.session.scalar(sa.select(ChangeControl))
    assert f'href="/change-control/{change.id}"' in register.get_data(as_text=True)

    # a task with a missing due date is refused by field; a good one is added
    response = post_form(client, f"/change-control/{change.id}/tasks",
                         {"task_title": "Print checklists", "task_owner_id": str(p.operator.id), "due_on": ""},
                         token_from=f"/change-control/{change.id}")
    assert response.status_code == 422 and any("Due date is required" in e for e in field_errors(response))
    response = post_form(client, f"/change-control/{change.id}/tasks",
                         {"task_title": "Print checklists", "task_owner_id": str(p.operator.id),
                          "due_on": (clock.now_utc().date() + timedelta(days=5)).isoformat()},
                         token_from=f"/change-control/{change.id}", follow_redirects=True)
    assert "Task added." in alerts(response) and "Print checklists" in text_of(response)


def test_operator_cannot_raise_or_sign_but_can_see_the_register(app, p, owner):
    change = new_change(owner)
    client = client_for(app, p.operator)
    assert client.get("/change-control/").status_code == 200
    assert client.get("/change-control/new").status_code == 403
    assert client.get(f"/change-control/{change.id}/approve").status_code == 403
    assert client.get(f"/change-control/{change.id}").status_code == 200


def test_edit_after_draft_needs_a_reason_shown_under_its_field(app, p, owner):
    change = new_change(owner)
    signed(cc.submit, change, owner)
    client = client_for(app, owner)
    url = f"/change-control/{change.id}/edit"
    data = {**fields(owner, title="Sharper title"), "owner_id": str(owner.id), "expected_version": str(version(change))}
    response = post_form(client, url, data)
    assert response.status_code == 422
    assert any("reason for change is required" in e for e in field_errors(response))
    response = post_form(client, url, {**data, "reason": "QA asked for a clearer title"}, follow_redirects=True)
    assert f"{change.number} saved." in alerts(response)
    db.session.expire_all()
    assert db.session.get(ChangeControl, change.id).title == "Sharper title"


def test_signed_steps_through_the_pages_and_closure_gated_on_training_with_override(app, p, owner, make_user):
    waiting = make_user("wait.op", roles={"operator"}, full_name="Walter Waiting")
    hold([waiting], p.job_function_id)
    document = new_document(p)
    effective_revision(p, document)
    train(waiting, document.revisions[0])
    change = new_change(owner, [document])
    run(cc.add_task, change, actor=owner, title="Brief the shift", owner_id=owner.id,
        due_on=clock.now_utc().date())
    owner_client, qa_client = client_for(app, owner), client_for(app, p.qa)
    record = f"/change-control/{change.id}"

    response = sign(owner_client, f"{record}/submit", owner)
    assert any("is now Submitted" in a for a in alerts(response))
    response = sign(qa_client, f"{record}/reject", p.qa, comment="")
    assert response.status_code == 422  # a rejection needs a comment; nothing written
    response = sign(qa_client, f"{record}/approve", p.qa, comment="Agreed")
    assert any("is now Approved" in a for a in alerts(response))

    response = post_form(owner_client, f"{record}/start", {"expected_version": str(version(change))},
                         token_from=record, follow_redirects=True)
    assert any("Implementation of" in a for a in alerts(response))
    db.session.expire_all()
    change = db.session.get(ChangeControl, change.id)
    revision = db.session.get(Revision, change.documents[0].revision_id)
    assert f"/documents/{document.id}/revisions/{revision.id}" in response.get_data(as_text=True)

    task = db.session.scalar(sa.select(ChangeTask))
    response = post_form(owner_client, f"{record}/tasks/{task.id}", {"status": "done", "note": ""},
                         token_from=record, follow_redirects=True)
    assert "Task “Brief the shift” is Done." in alerts(response)

    # take the draft through document control to effective, then to verification
    route(p, revision, actor=owner)
    submit(p, revision, actor=owner)
    review_as(p.reviewer, revision)
    approve_as(p.qa, revision, effective_on=clock.now_utc().date())
    run(docs.release_due, clock.now_utc().date())
    response = post_form(owner_client, f"{record}/verification", {"expected_version": str(version(change))},
                         token_from=record, follow_redirects=True)
    assert any("is in verification" in a for a in alerts(response))
    page = text_of(qa_client.get(record))
    assert "Walter Waiting (due" in page and "Effective" in page
    assert "All assignments (1)" in page and "Walter Waiting (wait.op) — Open, due" in page

    response = sign(qa_client, f"{record}/close", p.qa)
    assert response.status_code == 409
    assert any("Walter Waiting (wait.op) on SOP-QA-001 2.0" in a for a in alerts(response))
    response = sign(qa_client, f"{record}/close-override", p.qa, reason="Walter is on leave until Monday")
    assert any("is now Closed" in a for a in alerts(response))
    page = text_of(qa_client.get(record))
    assert "Closed with open training" in page and "Walter Waiting (wait.op)" in page
    assert "Quinn QA — Approved with open training —" in page and "Carl Change — Authored —" in page


def test_cancel_from_the_page_needs_a_reason(app, p, owner):
    change = new_change(owner)
    client = client_for(app, p.qa)
    response = sign(client, f"/change-control/{change.id}/cancel", p.qa, reason="")
    assert response.status_code == 422
    response = sign(client, f"/change-control/{change.id}/cancel", p.qa, reason="Duplicate of another change")
    assert any("is now Cancelled" in a for a in alerts(response))
    assert "Duplicate of another change" in text_of(client.get(f"/change-control/{change.id}"))


def test_closing_when_everyone_trained_from_the_page(app, p, owner):
    document = new_document(p)
    effective_revision(p, document)
    change = new_change(owner, [document])
    signed(cc.submit, change, owner)
    signed(cc.approve, change, p.qa)
    implement(p, owner, change)
    response = sign(client_for(app, p.qa), f"/change-control/{change.id}/close", p.qa)
    assert any("is now Closed" in a for a in alerts(response))


def test_register_overdue_view_lists_changes_with_an_open_task_past_due(app, p, owner):
    late, on_time = new_change(owner, title="Late change"), new_change(owner, title="On-time change")
    today = clock.now_utc().date()
    run(cc.add_task, late, actor=owner, title="Overdue task", owner_id=owner.id, due_on=today - timedelta(days=1))
    run(cc.add_task, on_time, actor=owner, title="Future task", owner_id=owner.id, due_on=today + timedelta(days=1))
    page = text_of(client_for(app, p.operator).get("/change-control/?overdue=1"))
    assert late.number in page and on_time.number not in page


def test_a_browser_takes_a_change_to_verification_with_the_buttons_of_its_page(app, p, owner):
    """The unsigned steps submitted exactly as the record page renders them (every hidden field, in order), as a
    browser does: the page's own form must carry one version of the record, the one it shows."""
    from core.testing.pages import html_forms, submit_form

    change = approved_change(p, owner)
    client, record = client_for(app, owner), f"/change-control/{change.id}"
    for button, status in (("Start implementation", "implementation"),
                           ("Implementation complete: to verification", "verification")):
        page = client.get(record)
        form = next(f for f in html_forms(page) for _name, _value, label in f.buttons if label.startswith(button))
        response = submit_form(client, form, page_url=record, follow_redirects=True)
        assert response.status_code == 200, text_of(response)[:1000]
        db.session.expire_all()
        assert db.session.get(ChangeControl, change.id).status == status, alerts(response)
