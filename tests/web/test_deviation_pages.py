"""Deviation pages: report through the form, the record with its training adequacy panel, the lifecycle through the
signing ceremonies, field errors and permissions."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core import clock
from core.db import db
from core.org import Department
from core.testing.pages import alerts, field_errors
from qms.deviations.models import CLOSED, Deviation
from testkit.plugin import PASSWORD, csrf_token, login, post_form, totp_code
from tests.integration.test_deviation_lifecycle import trained_after_the_deviation

TAG_RE = re.compile(r"<[^>]+>")
EXPECTED_RE = re.compile(r'name="expected_version"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="expected_version"')


def text_of(response) -> str:
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def client_for(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def local(app, user, moment) -> str:
    """A UTC instant as the user's datetime-local input shows it."""
    zone = ZoneInfo(user.timezone or app.config["ATTEST_DEFAULT_TIMEZONE"])
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def report_form(app, p, user, occurred, discovered, **extra):
    site_id = db.session.scalar(sa.select(Department.site_id).where(Department.id == p.department_id))
    return {"title": "Mixer cleaned with the wrong detergent", "occurred_at": local(app, user, occurred),
            "discovered_at": local(app, user, discovered), "site_id": str(site_id),
            "department_id": str(p.department_id), "area": "Mixer M-12",
            "description": "Detergent B was used instead of A.", "immediate_actions": "Batch quarantined.", **extra}


def expected_version(client, url: str) -> str:
    match = EXPECTED_RE.search(client.get(url).get_data(as_text=True))
    assert match, f"no expected_version on {url}"
    return match.group(1) or match.group(2)


def sign(client, user, url: str, comment: str = ""):
    page = client.get(url)
    assert page.status_code == 200, text_of(page)[:2000]
    body = page.get_data(as_text=True)
    meaning = re.search(r'<input type="hidden" name="meaning" value="([^"]+)"', body).group(1)
    return client.post(url, data={"password": PASSWORD, "totp_code": totp_code(user), "meaning": html.unescape(meaning),
                                  "comment": comment, "expected_version": expected_version(client, url),
                                  "csrf_token": csrf_token(client, url)}, follow_redirects=True)


def test_supervisor_reports_a_deviation_and_the_panel_shows_training_at_the_time(app, p):
    document, rev1, rev2, occurred, _trained = trained_after_the_deviation(p)

    supervisor = client_for(app, p.reviewer)
    data = report_form(app, p, p.reviewer, occurred, occurred + timedelta(hours=1),
                       person_ids=[str(p.operator.id)], document_ids=[str(document.id)])
    response = post_form(supervisor, "/deviations/new", data, follow_redirects=True)
    number = f"DEV-{clock.now_utc().year}-0001"
    assert f"Deviation {number} was reported." in alerts(response)
    page = text_of(response)
    assert "Otto Operator" in page and "SOP-QA-001" in page
    row = re.search(r'<table[^>]*id="adequacy".*?</table>', response.get_data(as_text=True), re.S).group(0)
    row_text = " ".join(html.unescape(TAG_RE.sub(" ", row)).split())
    assert f"Otto Operator SOP-QA-001 {rev2.label} ✗ Not trained then — Trained on revision {rev1.label}, not on " \
           f"revision {rev2.label}." in row_text
    assert f"Qualified today on revision {rev2.label}" in row_text

    # the register links the number to the record
    register = supervisor.get("/deviations/")
    deviation = db.session.scalar(sa.select(Deviation))
    assert f'href="/deviations/{deviation.id}">{number}</a>' in register.get_data(as_text=True)


def test_bad_report_shows_the_field_error_and_writes_nothing(app, p):
    supervisor = client_for(app, p.reviewer)
    now = clock.now_utc()
    response = post_form(supervisor, "/deviations/new",
                         report_form(app, p, p.reviewer, now - timedelta(hours=1), now - timedelta(hours=3)))
    assert response.status_code == 422
    assert "Discovered at: Discovered at cannot be before the deviation occurred." in field_errors(response)
    response = post_form(supervisor, "/deviations/new",
                         report_form(app, p, p.reviewer, now - timedelta(hours=3), now, title=""))
    assert response.status_code == 422
    assert "Title: Title is required." in field_errors(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Deviation)) == 0


def test_operator_can_read_but_not_report(app, p):
    operator = client_for(app, p.operator)
    assert operator.get("/deviations/").status_code == 200
    assert operator.get("/deviations/new").status_code == 403


def test_deviation_is_investigated_submitted_and_closed_through_the_pages(app, p):
    supervisor = client_for(app, p.reviewer)
    now = clock.now_utc()
    post_form(supervisor, "/deviations/new", report_form(app, p, p.reviewer, now - timedelta(hours=3), now))
    deviation = db.session.scalar(sa.select(Deviation))
    record = f"/deviations/{deviation.id}"

    response = post_form(supervisor, f"{record}/start", {"expected_version": expected_version(supervisor, record)},
                         token_from=record, follow_redirects=True)
    assert f"Investigation of {deviation.number} started." in alerts(response)

    # once investigating, a change needs a reason
    url = f"{record}/classify"
    response = post_form(supervisor, url, {"classification": "major", "classification_justification": "Impact.",
                                           "expected_version": expected_version(supervisor, url)})
    assert response.status_code == 422
    assert any("reason for change is required" in e for e in field_errors(response))
    response = post_form(supervisor, url, {"classification": "major", "classification_justification": "Impact.",
                                           "reason": "First assessment", "expected_version":
                                               expected_version(supervisor, url)}, follow_redirects=True)
    assert f"Deviation {deviation.number} classified as Major." in alerts(response)

    url = f"{record}/investigation"
    response = post_form(supervisor, url, {"investigation": "Interviewed the operator.",
                                           "root_cause": "The SOP did not name the detergent.",
                                           "root_cause_category": "procedure", "reason": "Investigation complete",
                                           "expected_version": expected_version(supervisor, url)},
                         follow_redirects=True)
    assert "Procedure" in text_of(response)

    response = sign(supervisor, p.reviewer, f"{record}/submit")
    assert f"Signed: Authored. Deviation {deviation.number} is now Pending QA approval." in alerts(response)

    qa = client_for(app, p.qa)
    response = sign(qa, p.qa, f"{record}/approve", comment="Investigation adequate.")
    assert f"Signed: Approved. Deviation {deviation.number} is now Closed." in alerts(response)
    db.session.expire_all()
    assert db.session.get(Deviation, deviation.id).status == CLOSED
    page = text_of(qa.get(record))
    assert "Sam Supervisor — Authored —" in page and "Quinn QA — Approved —" in page and " UTC" in page


def test_cancelling_needs_a_reason_and_shows_it(app, p):
    supervisor = client_for(app, p.reviewer)
    now = clock.now_utc()
    post_form(supervisor, "/deviations/new", report_form(app, p, p.reviewer, now - timedelta(hours=3), now))
    deviation = db.session.scalar(sa.select(Deviation))
    url = f"/deviations/{deviation.id}/cancel"
    response = post_form(supervisor, url, {"reason": "", "expected_version": expected_version(supervisor, url)})
    assert response.status_code == 422
    response = post_form(supervisor, url, {"reason": "Raised twice", "expected_version":
                                           expected_version(supervisor, url)}, follow_redirects=True)
    assert f"Deviation {deviation.number} cancelled." in alerts(response)
    assert "Raised twice" in text_of(response)


def test_register_filters_overdue_deviations(app, p):
    supervisor = client_for(app, p.reviewer)
    now = clock.now_utc()
    post_form(supervisor, "/deviations/new", report_form(app, p, p.reviewer, now - timedelta(days=41),
                                                         now - timedelta(days=40), title="Old spill"))
    post_form(supervisor, "/deviations/new", report_form(app, p, p.reviewer, now - timedelta(hours=2), now,
                                                         title="Fresh spill"))
    page = text_of(supervisor.get("/deviations/?overdue=1"))
    assert "Old spill" in page and "Overdue" in page and "Fresh spill" not in page
    assert "Fresh spill" in text_of(supervisor.get("/deviations/"))


def test_people_procedures_and_capa_are_linked_on_one_page(app, p):
    from core.db import transaction
    from features.support.documents import new_document
    from qms.capa.models import Capa

    document = new_document(p)
    supervisor = client_for(app, p.reviewer)
    now = clock.now_utc()
    post_form(supervisor, "/deviations/new", report_form(app, p, p.reviewer, now - timedelta(hours=3), now))
    deviation = db.session.scalar(sa.select(Deviation))
    with transaction():
        db.session.add(Capa(number="CAPA-2025-0042", title="Detergent labelling", source_type="deviation",
                            source_id=deviation.id, problem_statement="Wrong detergent.", owner_id=p.reviewer.id))
    url = f"/deviations/{deviation.id}/links"
    response = post_form(supervisor, url, {"person_ids": [str(p.operator.id)], "document_ids": [str(document.id)],
                                           "capa_number": "CAPA-2025-0099",
                                           "expected_version": expected_version(supervisor, url)})
    assert response.status_code == 422
    assert "Linked CAPA number: There is no CAPA numbered CAPA-2025-0099." in field_errors(response)
    db.session.expire_all()
    assert db.session.get(Deviation, deviation.id).people == []  # nothing half-written
    response = post_form(supervisor, url, {"person_ids": [str(p.operator.id)], "document_ids": [str(document.id)],
                                           "capa_number": "CAPA-2025-0042",
                                           "expected_version": expected_version(supervisor, url)},
                         follow_redirects=True)
    assert f"People, procedures and CAPA of {deviation.number} saved." in alerts(response)
    page = text_of(response)
    assert "Otto Operator" in page and "SOP-QA-001" in page and "CAPA-2025-0042 — Detergent labelling" in page
    assert "Not trained then" in page
