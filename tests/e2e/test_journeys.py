"""The journeys people make, in a real browser: QA approves an SOP revision after seeing its training impact; an
operator on a phone signs "Read and understood" and the supervisor's team matrix shows them qualified; a deviation
leads to a CAPA whose closure waits for the operator's training; a validation engineer executes the OQ in the app and
QA approves the run."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from core.db import db, transaction
from features.support.documents import (
    approve_as,
    hold,
    new_document,
    new_revision,
    review_as,
    route,
    run,
    submit,
)
from qms.documents import services as documents
from qms.documents.models import Revision
from qms.documents.publish import item_of
from qms.rules import today_utc
from testkit.plugin import is_postgres
from tests.e2e.conftest import log_in, sign_with
from training.models import COMPLETED, OPEN, TrainingAssignment


def _nav(page, label: str) -> None:
    """Follow a navigation bar link, opening the collapsed menu first on a small screen."""
    toggler = page.locator("button.navbar-toggler")
    if toggler.is_visible():
        toggler.click()
    page.locator("#nav").get_by_role("link", name=label, exact=True).click()


def _revision_in_review(p) -> Revision:
    """SOP-QA-001 revision 1.0, reviewed, waiting for QA's final approval; Otto holds the job function it trains."""
    hold([p.operator], p.job_function_id)
    document = new_document(p)
    revision = new_revision(p, document, content="# Purpose\n\nClean the mixer.\n\n## Steps\n\n1. Rinse twice.\n")
    route(p, revision, reviewers=[p.reviewer], approvers=[p.qa])
    submit(p, revision)
    review_as(p.reviewer, revision)
    return revision


def test_qa_approves_an_sop_revision_with_password_and_code_after_seeing_the_training_impact(p, browser):
    revision = _revision_in_review(p)
    page = browser.page()
    log_in(page, p.qa)
    _nav(page, "Documents")
    page.get_by_role("link", name="SOP-QA-001").first.click()
    page.get_by_role("link", name=re.compile(r"1\.0")).first.click()
    page.get_by_role("link", name=re.compile(r"^Approve")).click()

    impact = page.locator(".card", has_text="Training impact of the final approval")
    expect(impact).to_contain_text("1 person(s) will be assigned this revision")
    expect(impact).to_contain_text("OP-MIX 1")
    expect(page.locator("body")).to_contain_text("Quinn QA (quinn.qa)")  # the signer is the logged-in person
    sign_with(page, p.qa, "Sign and approve")

    expect(page.locator(".alert-success")).to_contain_text("Approved")
    db.session.rollback()  # see what the server committed (end this test's read snapshot)
    assert db.session.get(Revision, revision.id).status == "approved"
    assignment = db.session.scalar(sa.select(TrainingAssignment).where(
        TrainingAssignment.item_id == item_of(revision).id))
    assert (assignment.user_id, assignment.status) == (p.operator.id, OPEN)


def test_an_operator_on_a_phone_reads_and_signs_and_the_team_matrix_shows_them_qualified(p, browser, app):
    revision = _revision_in_review(p)
    approve_as(p.qa, revision, effective_on=today_utc())
    run(documents.release_due)
    with transaction(reason="Otto reports to Sam"):
        p.operator.supervisor_id = p.reviewer.id

    phone = browser.page(phone=True)
    log_in(phone, p.operator)
    _nav(phone, "My training")
    phone.get_by_role("link", name=re.compile("SOP-QA-001 revision 1.0")).click()
    expect(phone.locator(".document-content")).to_contain_text("Rinse twice.")
    phone.get_by_role("link", name=re.compile("Read and understood")).click()
    sign_with(phone, p.operator, "Sign as read and understood")
    expect(phone.locator("body")).to_contain_text("Read and understood")
    assert phone.viewport_size["width"] == 390
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone

    db.session.rollback()  # see what the server committed (end this test's read snapshot)
    assignment = db.session.scalar(sa.select(TrainingAssignment).where(
        TrainingAssignment.item_id == item_of(revision).id))
    assert assignment.status == COMPLETED

    supervisor = browser.page()
    log_in(supervisor, p.reviewer)
    _nav(supervisor, "Team training")
    cell = supervisor.locator("tr[data-person='otto.operator'] td[data-state]")
    expect(cell).to_have_attribute("data-state", "qualified")
    expect(cell).to_contain_text("1.0")


def test_a_deviation_leads_to_a_capa_whose_retraining_holds_closure_until_the_operator_has_trained(p, browser):
    from datetime import timedelta

    from features.support.documents import effective_revision, train
    from qms.capa.models import Capa
    from qms.deviations import services as deviations

    hold([p.operator], p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    train(p.operator, revision)
    deviation = run(deviations.report_deviation, actor=p.reviewer, title="Rinse step skipped on mixer M-2",
                    occurred_at=clock_now() - timedelta(hours=5), discovered_at=clock_now() - timedelta(hours=4),
                    site_id=site_of(p), department_id=p.department_id, description="Residue found before batch 42.",
                    person_ids=[p.operator.id], document_ids=[document.id])

    manager = browser.page()
    log_in(manager, p.reviewer)
    _nav(manager, "Deviations")
    manager.get_by_role("link", name=deviation.number).click()
    manager.get_by_role("link", name="Raise a CAPA…").click()
    expect(manager.locator("#source_id")).to_have_value(deviation.number)
    manager.fill("#root_cause", "The operator had not retrained since the rinse step was added.")
    manager.click("button:has-text('Raise CAPA')")
    expect(manager.locator(".alert-success")).to_contain_text("raised in Draft")
    capa_url = manager.url
    manager.get_by_role("link", name="Add action").click()
    manager.select_option("#kind", "preventive")
    manager.fill("#description", "Retrain the operator on the cleaning SOP")
    manager.fill("#due_on", (today_utc() + timedelta(days=7)).isoformat())
    manager.check("#retraining")
    manager.get_by_label(re.compile(r"^SOP-QA-001")).check()
    manager.get_by_text("People to retrain by name").click()
    manager.get_by_label("Otto Operator (otto.operator)").check()
    manager.click("button:has-text('Save action')")
    expect(manager.locator("body")).to_contain_text("Retrain the operator on the cleaning SOP")

    qa = browser.page()
    log_in(qa, p.qa)
    qa.goto(capa_url)
    qa.get_by_role("link", name="Approve plan (sign)").click()
    sign_with(qa, p.qa, "Sign and approve the plan")
    expect(qa.locator(".alert-success")).to_contain_text("Open (actions in progress)")
    qa.get_by_role("link", name="Approve retraining (sign)").click()
    expect(qa.locator("body")).to_contain_text("Otto Operator")
    sign_with(qa, p.qa, "Sign and approve the retraining")
    expect(qa.locator(".alert-success")).to_contain_text("1 training assignment(s) created")

    # the retraining is not done, so nothing moves towards closure while Otto has not trained
    manager.goto(capa_url)
    manager.get_by_role("link", name="Record as done").click()
    manager.fill("#evidence", "Training records checked")
    manager.click("button:has-text('Record as done')")
    expect(manager.locator(".alert-danger")).to_contain_text("Otto Operator (otto.operator) on SOP-QA-001 rev 1.0")
    manager.goto(capa_url)
    manager.fill("#effectiveness_due_on", (today_utc() + timedelta(days=30)).isoformat())
    manager.click("button:has-text('Start effectiveness check')")
    expect(manager.locator(".alert-danger")).to_contain_text("still has actions to carry out")
    db.session.rollback()
    capa = db.session.scalar(sa.select(Capa))
    assert capa.status == "open"

    train(p.operator, revision)  # Otto reads and signs the SOP again (the read-and-sign journey above)
    manager.goto(capa_url)
    manager.get_by_role("link", name="Record as done").click()
    manager.fill("#evidence", "Otto signed SOP-QA-001 rev 1.0 again")
    manager.click("button:has-text('Record as done')")
    expect(manager.locator(".alert-success")).to_be_visible()
    manager.goto(capa_url)
    manager.fill("#effectiveness_due_on", (today_utc() + timedelta(days=30)).isoformat())
    manager.click("button:has-text('Start effectiveness check')")
    manager.get_by_role("link", name="Record effectiveness (sign)").click()
    manager.fill("#effectiveness_result", "No residue in the next 20 cleanings")
    manager.check("#effective-0")
    sign_with(manager, p.reviewer, "Sign the effectiveness check")
    expect(manager.locator(".alert-success")).to_be_visible()

    qa.goto(capa_url)
    qa.get_by_role("link", name="Close (sign)").click()
    sign_with(qa, p.qa, "Sign and close")
    expect(qa.locator(".alert-success")).to_contain_text("Closed")
    db.session.rollback()
    assert db.session.get(Capa, capa.id).status == "closed"
    expect(qa.locator("body")).to_contain_text(deviation.number)  # the chain links back to the deviation


def clock_now():
    from core import clock

    return clock.now_utc()


def site_of(p) -> int:
    from core.org import Department

    return db.session.get(Department, p.department_id).site_id


@pytest.mark.skipif(is_postgres(), reason="runs in the SQLite pass only: the protocol's own scratch database is the "
                                          "same in both passes, and CI time is better spent once")
def test_a_validation_engineer_executes_the_oq_in_the_app_signs_it_and_qa_approves_it(p, browser, make_user):
    from core.org import Department
    from features.support.documents import prove
    from validation import services as validation
    from validation.models import ValidationRun

    department = db.session.get(Department, p.department_id)
    vera = make_user("vera.val", roles={"validation_engineer"}, full_name="Vera Validation",
                     site_id=department.site_id, department_id=department.id)
    paths = [f.path for f in validation.protocol_files(["OQ"])]
    run(validation.approve_files, paths, actor=p.qa, proof=prove(p.qa), reason=None)

    engineer = browser.page()
    log_in(engineer, vera)
    _nav(engineer, "Validation")
    engineer.locator("#protocol-OQ button:has-text('Start run')").click()
    expect(engineer.locator(".alert-success")).to_contain_text("started")
    # the page follows the run as it executes in the background, until the protocol has completed
    expect(engineer.locator("#run-status")).to_have_text("Completed (to be signed)", timeout=600_000)
    expect(engineer.locator("h1")).to_contain_text("passed")
    engineer.get_by_role("link", name="Sign as executed").click()
    sign_with(engineer, vera, "Sign as executed")
    expect(engineer.locator("#run-status")).to_have_text("Executed (signed)")
    run_url = engineer.url

    reviewer = browser.page()
    log_in(reviewer, p.qa2)
    reviewer.goto(run_url)
    reviewer.get_by_role("link", name="Review (sign)").click()
    sign_with(reviewer, p.qa2, "Sign as reviewed", comment="Evidence of every step checked.")
    expect(reviewer.locator("#run-status")).to_have_text("Reviewed by QA")

    approver = browser.page()
    log_in(approver, p.qa)
    approver.goto(run_url)
    approver.get_by_role("link", name="Approve (sign)").click()
    sign_with(approver, p.qa, "Sign and approve")
    expect(approver.locator("#run-status")).to_have_text("Approved by QA")
    for name in ("Vera Validation", "Quincy QA", "Quinn QA"):
        expect(approver.locator("body")).to_contain_text(name)
    db.session.rollback()
    result = db.session.scalar(sa.select(ValidationRun))
    assert (result.protocol, result.result, result.failed, result.status) == ("OQ", "passed", 0, "approved")
    assert result.scenarios >= 50
