"""The CAPA pages through the real pages (CSRF, permissions, messages): raise a CAPA, plan a retraining action, sign
the plan and the retraining, and follow the training progress on the record."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import sqlalchemy as sa

from core.db import db
from core.testing.pages import alerts, field_errors
from features.support.documents import TODAY, count, effective_revision, hold, new_document, train
from qms.capa.models import ACTION_APPROVED, DRAFT, OPEN, Capa
from signatures.models import Signature
from testkit.plugin import PASSWORD, login, post_form, totp_code
from training.models import SOURCE_CAPA_ACTION, TrainingAssignment

TAG_RE = re.compile(r"<[^>]+>")


def text_of(response) -> str:
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def client_for(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def expected_version(client, url: str) -> str:
    return re.search(r'name="expected_version"[^>]*value="(\d+)"', client.get(url).get_data(as_text=True)).group(1)


def sign(client, url: str, user, meaning: str = "Approved", **fields):
    data = {"meaning": meaning, "expected_version": expected_version(client, url), "password": PASSWORD,
            "totp_code": totp_code(user), **fields}
    return post_form(client, url, data, follow_redirects=True)


def test_capa_raised_planned_and_retraining_approved_through_the_pages(app, p, make_user):
    nina = make_user("nina.new", roles={"operator"}, full_name="Nina New")
    document = new_document(p, audience_job_function_ids=[])
    revision = effective_revision(p, document)
    hold([nina], p.job_function_id)

    manager = client_for(app, p.reviewer)
    # bad input: the fields are named, nothing is written
    response = post_form(manager, "/capa/new", {"title": "", "source_type": "deviation", "problem_statement": "x",
                                                "owner_id": str(p.reviewer.id)})
    assert response.status_code == 422 and any("Title" in e for e in field_errors(response))
    response = post_form(manager, "/capa/new", {"title": "Residue in mixer", "source_type": "deviation",
                                                "problem_statement": "Residue found", "owner_id": str(p.reviewer.id)})
    assert response.status_code == 422
    assert any("Name the deviation this CAPA comes from" in e for e in field_errors(response))
    assert count(Capa) == 0

    response = post_form(manager, "/capa/new", {
        "title": "Residue in mixer", "source_type": "audit_finding", "source_reference": "IA-2025-04 finding 3",
        "problem_statement": "Residue found after cleaning", "root_cause": "Rinse step unclear",
        "owner_id": str(p.reviewer.id)}, follow_redirects=True)
    assert response.status_code == 200, text_of(response)
    capa = db.session.scalar(sa.select(Capa))
    assert capa.status == DRAFT and f"{capa.number} was raised in Draft" in " ".join(alerts(response))
    assert capa.number in text_of(manager.get("/capa/"))
    assert f'href="/capa/{capa.id}"' in manager.get("/capa/").get_data(as_text=True)

    action_url = f"/capa/{capa.id}/actions/new"
    due = (TODAY + timedelta(days=10)).isoformat()
    response = post_form(manager, action_url, {"kind": "preventive", "description": "Retrain mixing operators",
                                               "owner_id": str(p.reviewer.id), "due_on": due, "retraining": "y",
                                               "job_function_ids": str(p.job_function_id),
                                               "expected_version": expected_version(manager, action_url)})
    assert response.status_code == 422
    assert any("at least one document" in e for e in field_errors(response))
    response = post_form(manager, action_url, {"kind": "preventive", "description": "Retrain mixing operators",
                                               "owner_id": str(p.reviewer.id), "due_on": due, "retraining": "y",
                                               "document_ids": str(document.id),
                                               "job_function_ids": str(p.job_function_id),
                                               "expected_version": expected_version(manager, action_url)},
                         follow_redirects=True)
    assert response.status_code == 200 and "Action saved." in alerts(response)
    assert "Train on: SOP-QA-001" in text_of(response)

    # a supervisor cannot sign the plan
    assert manager.get(f"/capa/{capa.id}/approve-plan").status_code == 403

    qa = client_for(app, p.qa)
    signatures = count(Signature)
    response = post_form(qa, f"/capa/{capa.id}/approve-plan", {
        "meaning": "Approved", "expected_version": expected_version(qa, f"/capa/{capa.id}/approve-plan"),
        "password": "wrong password", "totp_code": totp_code(p.qa)})
    assert response.status_code == 401 and count(Signature) == signatures
    response = sign(qa, f"/capa/{capa.id}/approve-plan", p.qa)
    assert response.status_code == 200, text_of(response)
    db.session.expire_all()
    assert capa.status == OPEN

    action = capa.actions[0]
    page = text_of(qa.get(f"/capa/{capa.id}/actions/{action.id}/approve"))
    assert "Training this approval assigns" in page and "Nina New" in page and "SOP-QA-001" in page
    response = sign(qa, f"/capa/{capa.id}/actions/{action.id}/approve", p.qa)
    assert response.status_code == 200, text_of(response)
    assert any("1 training assignment(s) created" in a for a in alerts(response))
    db.session.expire_all()
    assert action.status == ACTION_APPROVED
    assignment = db.session.scalar(sa.select(TrainingAssignment).where(
        TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.source_id == action.id))
    assert assignment.user_id == nina.id and assignment.item.source_id == revision.id

    page = text_of(qa.get(f"/capa/{capa.id}"))
    assert "Training: 1 assigned, 0 completed, 1 open, 0 overdue" in page and "Nina New (nina.new)" in page
    train(nina, revision)
    page = text_of(qa.get(f"/capa/{capa.id}"))
    assert "Training: 1 assigned, 1 completed, 0 open, 0 overdue" in page
    assert "Nina New — Read and understood" in page

    # the owner records the action as done; an operator may not even open the form
    operator = client_for(app, p.operator)
    assert operator.get("/capa/new").status_code == 403
    response = post_form(manager, f"/capa/{capa.id}/actions/{action.id}/complete",
                         {"evidence": "Training records complete"}, follow_redirects=True)
    assert f"Action {action.id} is done." in alerts(response)


def test_closing_page_refuses_while_the_capa_has_no_effectiveness_check(app, p):
    client = client_for(app, p.qa)
    response = post_form(client, "/capa/new", {
        "title": "Late deliveries", "source_type": "complaint", "source_reference": "Complaint C-17",
        "problem_statement": "Customer complaint", "owner_id": str(p.qa.id)}, follow_redirects=True)
    capa = db.session.scalar(sa.select(Capa))
    response = sign(client, f"/capa/{capa.id}/close", p.qa)
    assert any("Cannot close" in a for a in alerts(response))
    db.session.expire_all()
    assert capa.status == DRAFT


def test_a_capa_raised_from_a_deviation_links_back_to_it(app, p):
    from core.clock import now_utc
    from features.support.documents import run
    from qms.deviations import services as deviations

    site_id = db.session.scalar(sa.text("select site_id from core_department where id = :d"),
                                {"d": p.department_id})
    deviation = run(deviations.report_deviation, actor=p.reviewer, title="Mixer residue", occurred_at=now_utc(),
                    discovered_at=now_utc(), site_id=site_id, department_id=p.department_id,
                    description="Residue found in M-2")
    client = client_for(app, p.reviewer)
    response = post_form(client, "/capa/new", {
        "title": "Residue in mixer", "source_type": "deviation", "source_id": deviation.number,
        "problem_statement": "Residue found after cleaning", "owner_id": str(p.reviewer.id)}, follow_redirects=True)
    assert response.status_code == 200, text_of(response)
    capa = db.session.scalar(sa.select(Capa))
    assert capa.source_id == deviation.id
    assert f"Source: Deviation {deviation.number}" in text_of(client.get(f"/capa/{capa.id}"))
    db.session.expire_all()
    assert db.session.get(type(deviation), deviation.id).capa_id == capa.id  # the deviation now has its CAPA


def test_raise_a_capa_from_the_deviation_page_fills_in_the_source(app, p):
    from core.clock import now_utc
    from features.support.documents import run
    from qms.deviations import services as deviations

    site_id = db.session.scalar(sa.text("select site_id from core_department where id = :d"),
                                {"d": p.department_id})
    deviation = run(deviations.report_deviation, actor=p.reviewer, title="Label mix-up", occurred_at=now_utc(),
                    discovered_at=now_utc(), site_id=site_id, department_id=p.department_id,
                    description="Two label rolls were mixed on line 3")
    client = client_for(app, p.reviewer)
    page = client.get(f"/deviations/{deviation.id}").get_data(as_text=True)
    link = f"/capa/new?source_type=deviation&amp;source={deviation.number}"
    assert "Raise a CAPA" in page and link in page
    form = text_of(client.get(html.unescape(link)))
    assert f"CAPA for {deviation.number}: Label mix-up" in client.get(html.unescape(link)).get_data(as_text=True)
    assert "Two label rolls were mixed on line 3" in form


def test_qa_cancels_one_action_through_its_signing_page_and_the_register_shows_what_is_due(app, p):
    from features.support.documents import prove, run
    from qms.capa import services
    from qms.capa.models import ACTION_CANCELLED, CORRECTIVE

    capa = run(services.create_capa, actor=p.reviewer, title="Spill kit missing", source_type="audit_finding",
               source_reference="IA-7", problem_statement="No spill kit at line 2", root_cause="Not in the checklist",
               owner_id=p.reviewer.id)
    keep = run(services.add_action, capa, services.ActionInput(kind=CORRECTIVE, description="Place a kit",
                                                               owner_id=p.reviewer.id, due_on=TODAY),
               actor=p.reviewer, expected_row_version=capa.row_version)
    drop = run(services.add_action, capa, services.ActionInput(kind=CORRECTIVE, description="Buy a second kit",
                                                               owner_id=p.reviewer.id,
                                                               due_on=TODAY + timedelta(days=9)),
               actor=p.reviewer, expected_row_version=capa.row_version)
    db.session.refresh(capa)
    run(services.approve_plan, capa, actor=p.qa, proof=prove(p.qa), expected_row_version=capa.row_version)

    qa = client_for(app, p.qa)
    record = text_of(qa.get(f"/capa/{capa.id}"))
    assert record.count("Cancel action (sign)") == 2
    url = f"/capa/{capa.id}/actions/{drop.id}/cancel"
    response = sign(qa, url, p.qa, meaning="Cancelled", reason="")
    assert response.status_code == 422 and any("Reason for cancelling" in e for e in field_errors(response))
    response = sign(qa, url, p.qa, meaning="Cancelled", reason="One kit is enough for the line")
    assert response.status_code == 200 and any("Signed: Cancelled" in a for a in alerts(response))
    db.session.expire_all()
    assert drop.status == ACTION_CANCELLED and keep.status == ACTION_APPROVED
    assert f"Action {drop.id} cancelled: One kit is enough for the line" in text_of(qa.get(f"/capa/{capa.id}"))
    # the register: the next due date of the open action; not overdue today
    register = text_of(qa.get("/capa/"))
    assert f"{capa.number} Spill kit missing Open (actions in progress) {TODAY.isoformat()}" in register
    assert capa.number not in text_of(qa.get("/capa/?overdue=1"))
    owner = client_for(app, p.reviewer)
    assert owner.get(url).status_code == 403  # QA only
