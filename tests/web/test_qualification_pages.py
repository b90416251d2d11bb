"""Team qualification matrix, "was X qualified on SOP-Y at time T", and the training record (page and PDF), as a
supervisor, a trainee, a coordinator or an inspector would check them."""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditTransaction
from core.db import db
from core.testing.pages import events, field_errors
from features.support.documents import (
    START,
    approved_revision,
    effective_revision,
    hold,
    new_document,
    setup_people,
    train,
)
from qms.documents.publish import item_of
from signatures.models import READ_AND_UNDERSTOOD, Signature
from tests.web.test_read_and_sign import client_for, text_of
from training.models import TrainingAssignment

ROW_RE = re.compile(r'<tr data-person="([^"]+)">(.*?)</tr>', re.S)
CELL_RE = re.compile(r"<t[hd](?: [^>]*)?>(.*?)</t[hd]>", re.S)
HIDDEN_RE = re.compile(r'<span aria-hidden="true">.*?</span>', re.S)
TAG_RE = re.compile(r"<[^>]+>")
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Team:
    p: Any
    lead: Any
    tom: Any  # trained on SOP-QA-001 1.0
    oscar: Any  # assigned SOP-QA-001 1.0, due on START, never trained: overdue
    uma: Any  # took the job function after the approval: no assignment, not qualified
    olga: Any  # same department, another supervisor's team
    doc1: Any
    doc2: Any
    rev1: Any


@pytest.fixture
def team(app, make_user) -> Team:
    p = setup_people(make_user)
    lead = make_user("sue.lead", roles={"supervisor"}, full_name="Sue Lead", timezone="Europe/Berlin")
    members = {name: make_user(f"{name}.{last.lower()}", roles={"operator"}, full_name=f"{name.title()} {last}",
                               supervisor_id=lead.id, department_id=p.department_id)
               for name, last in (("tom", "Trained"), ("oscar", "Overdue"), ("uma", "Untrained"))}
    olga = make_user("olga.other", roles={"operator"}, full_name="Olga Other", supervisor_id=p.reviewer.id,
                     department_id=p.department_id)
    hold([members["tom"], members["oscar"], olga], p.job_function_id)
    doc1 = new_document(p)
    rev1 = effective_revision(p, doc1)  # effective and due today (START)
    clock.freeze(clock.now_utc() + timedelta(hours=1))
    train(members["tom"], rev1)
    hold([members["uma"]], p.job_function_id)
    clock.freeze(clock.now_utc() + timedelta(days=2))
    doc2 = new_document(p, number="SOP-QA-002", title="Weighing of raw materials")
    approved_revision(p, doc2, effective_on=clock.now_utc().date() + timedelta(days=7))
    return Team(p, lead, members["tom"], members["oscar"], members["uma"], olga, doc1, doc2, rev1)


def matrix_rows(response) -> dict[str, list[str]]:
    """The matrix as a screen reader reads it: per username, the person then one text per document column."""
    rows = {}
    for username, row in ROW_RE.findall(response.get_data(as_text=True)):
        row = HIDDEN_RE.sub("", row)
        rows[username] = [" ".join(html.unescape(TAG_RE.sub(" ", cell)).split()) for cell in CELL_RE.findall(row)]
    return rows


def local_input(moment: datetime) -> str:
    """What a datetime-local field in Berlin sends for this instant."""
    return moment.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M:%S")


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages).split())


# --- the team matrix --------------------------------------------------------------------------------------------------


def test_supervisor_sees_only_their_direct_reports_with_each_state_in_words(app, team):
    client = client_for(app, team.lead)
    response = client.get("/training/team")
    assert response.status_code == 200
    rows = matrix_rows(response)
    assert set(rows) == {"tom.trained", "oscar.overdue", "uma.untrained"}
    assert "Olga Other" not in text_of(response)

    # person, then SOP-QA-001 and SOP-QA-002: the state in words, the revision or due date, and the reason
    assert rows["tom.trained"] == [
        "Tom Trained tom.trained", "Qualified 1.0 Trained on revision 1.0.",
        "In training due 2025-03-12 Assigned, due on 2025-03-12. Not trained on SOP-QA-002 revision 1.0."]
    assert rows["oscar.overdue"][1] == ("Overdue due 2025-03-03 Due on 2025-03-03. Not trained on SOP-QA-001 "
                                        "revision 1.0.")
    assert rows["uma.untrained"][1] == "Not qualified Not trained on SOP-QA-001 revision 1.0."
    text = text_of(response)
    for legend in ("Qualified: 1", "In training: 3", "Overdue: 1", "Not qualified: 1"):
        assert legend in text, legend

    body = response.get_data(as_text=True)
    assert f'href="/training/records/{team.tom.id}"' in body
    assert f'href="/documents/{team.doc1.id}"' in body and f'href="/documents/{team.doc2.id}"' in body
    assert 'name="department"' not in body  # a supervisor has no department filter


def test_a_supervisor_cannot_look_at_a_department_and_the_refusal_is_audited(app, team):
    client = client_for(app, team.lead)
    response = client.get(f"/training/team?department={team.p.department_id}")
    assert response.status_code == 403
    assert "Olga Other" not in text_of(response)
    denied = [json.loads(e.detail) for e in events("permission.denied", team.lead)]
    assert denied and denied[-1]["scope"] == "other teams"


def test_a_training_coordinator_chooses_a_department(app, team, make_user):
    coordinator = make_user("cora.coord", roles={"training_coordinator"}, full_name="Cora Coordinator")
    client = client_for(app, coordinator)
    assert 'name="department"' in client.get("/training/team").get_data(as_text=True)
    response = client.get(f"/training/team?department={team.p.department_id}")
    assert response.status_code == 200
    assert set(matrix_rows(response)) == {"tom.trained", "oscar.overdue", "uma.untrained", "olga.other"}
    assert client.get("/training/team?department=999999").status_code == 422


def test_the_matrix_as_of_a_past_moment_differs_from_now_after_a_new_revision_is_released(app, team):
    before = clock.now_utc()
    clock.freeze(before + timedelta(hours=1))
    effective_revision(team.p, team.doc1)  # 2.0 in force now; everyone holding the job function is assigned it
    client = client_for(app, team.lead)

    now = matrix_rows(client.get("/training/team"))
    today = clock.now_utc().date().isoformat()
    assert now["tom.trained"][1] == (f"In training due {today} Assigned, due on {today}. Trained on revision 1.0, "
                                     f"not on revision 2.0.")

    response = client.get("/training/team", query_string={"as_of": local_input(before)})
    assert response.status_code == 200
    assert f"({before:%Y-%m-%d %H:%M:%S} UTC)" in text_of(response)  # Berlin time read as such, shown in UTC
    past = matrix_rows(response)
    assert past["tom.trained"][1] == "Qualified 1.0 Trained on revision 1.0."
    # Uma was assigned revision 2.0 only now: at that moment she had no training open, she was simply not qualified
    assert past["uma.untrained"][1] == "Not qualified Not trained on SOP-QA-001 revision 1.0."

    # before Tom signed, his training on 1.0 was open (it is completed now): in training then, not "not qualified"
    assigned_at = db.session.scalar(sa.select(TrainingAssignment.assigned_at).where(
        TrainingAssignment.user_id == team.tom.id, TrainingAssignment.item_id == item_of(team.rev1).id))
    earlier = matrix_rows(client.get("/training/team", query_string={"as_of": local_input(assigned_at)}))
    assert earlier["tom.trained"][1] == ("In training due 2025-03-03 Assigned, due on 2025-03-03. Not trained on "
                                         "SOP-QA-001 revision 1.0.")


def test_the_matrix_refuses_a_moment_in_the_future(app, team):
    client = client_for(app, team.lead)
    response = client.get("/training/team", query_string={"as_of": local_input(clock.now_utc() + timedelta(days=1))})
    assert response.status_code == 422
    assert any("must not be in the future" in e for e in field_errors(response))


# --- was X qualified on SOP-Y at T ------------------------------------------------------------------------------------


def test_point_in_time_lookup_names_the_revision_in_force_and_the_one_trained(app, team):
    trained_then = clock.now_utc()
    clock.freeze(trained_then + timedelta(hours=1))
    effective_revision(team.p, team.doc1)
    client = client_for(app, team.lead)

    then = text_of(client.get("/training/qualification", query_string={
        "username": "tom.trained", "document": "sop-qa-001", "at": local_input(trained_then)}))
    assert "Yes: Tom Trained was qualified" in then
    assert "Revision in force then 1.0 Trained revision 1.0" in then
    assert f"({trained_then:%Y-%m-%d %H:%M:%S} UTC)" in then

    response = client.get("/training/qualification", query_string={"username": "tom.trained",
                                                                    "document": "SOP-QA-001"})
    assert response.status_code == 200
    now = text_of(response)
    assert "No: Tom Trained was not qualified" in now
    assert "Revision in force then 2.0 Trained revision 1.0" in now
    assert "Reason Trained on revision 1.0, not on revision 2.0." in now
    completed = db.session.scalar(sa.select(TrainingAssignment.completed_at).where(
        TrainingAssignment.user_id == team.tom.id, TrainingAssignment.item_id == item_of(team.rev1).id))
    assert f"({completed:%Y-%m-%d %H:%M:%S} UTC)" in now


def test_an_unknown_user_or_document_is_a_field_error_and_answers_nothing(app, team):
    client = client_for(app, team.lead)
    response = client.get("/training/qualification", query_string={"username": "nobody", "document": "SOP-QA-001"})
    assert response.status_code == 422
    assert field_errors(response) == ["Username: There is no user 'nobody'."]
    assert "qualified" not in text_of(response).split("Answer", 1)[1]

    response = client.get("/training/qualification", query_string={"username": "tom.trained", "document": "SOP-XX-9"})
    assert response.status_code == 422
    assert field_errors(response) == ["Document number: There is no document 'SOP-XX-9'."]


# --- access -----------------------------------------------------------------------------------------------------------


def test_an_operator_sees_their_own_record_but_neither_the_team_nor_anyone_elses_record(app, team):
    client = client_for(app, team.tom)
    assert client.get("/training/team").status_code == 403
    assert client.get("/training/qualification").status_code == 403
    assert client.get(f"/training/records/{team.oscar.id}").status_code == 403
    assert client.get(f"/training/records/{team.oscar.id}.pdf").status_code == 403
    assert [json.loads(e.detail)["path"] for e in events("permission.denied", team.tom)][-2:] == [
        f"/training/records/{team.oscar.id}", f"/training/records/{team.oscar.id}.pdf"]

    assert "My training record" in text_of(client.get("/my-training/"))
    response = client.get("/training/records/mine")
    assert response.status_code == 200
    text = text_of(response)
    assert "Training record of Tom Trained" in text
    assert "Oscar" not in text


# --- the training record ----------------------------------------------------------------------------------------------


def test_the_record_shows_each_completion_with_its_signature_and_the_open_training(app, team):
    signature = db.session.scalar(sa.select(Signature).where(Signature.signer_id == team.tom.id))
    client = client_for(app, team.lead)
    response = client.get(f"/training/records/{team.tom.id}")
    assert response.status_code == 200
    text = text_of(response)
    assert "Job functions today OP-MIX" in text
    assert "Open training (1)" in text
    assert "SOP-QA-002 revision 1.0 — Weighing of raw materials · due 2025-03-12" in text
    assert "Completed training (1)" in text
    signed = f"{signature.signed_at:%Y-%m-%d %H:%M:%S} UTC"
    assert f"SOP-QA-001 Cleaning of the mixer 1.0 {signed}" in text  # completed at, in UTC
    assert f"Tom Trained — {READ_AND_UNDERSTOOD} — {signed}" in text
    assert f"SHA-256 {signature.content_sha256[:12]}…" in text
    assert signature.signed_at.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S CET") in text  # the viewer's time


def test_the_printed_record_is_a_pdf_with_the_signature_manifestation_and_is_audited(app, team):
    signature = db.session.scalar(sa.select(Signature).where(Signature.signer_id == team.tom.id))
    client = client_for(app, team.lead)
    response = client.get(f"/training/records/{team.tom.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    text = pdf_text(response.data)
    for expected in ("Training record — Tom Trained (tom.trained)", "SOP-QA-001 revision 1.0 — Cleaning of the mixer",
                     f"Signed: Tom Trained — {READ_AND_UNDERSTOOD} — {signature.signed_at:%Y-%m-%d %H:%M:%S} UTC",
                     f"SHA-256: {signature.content_sha256}", "SOP-QA-002 revision 1.0", "Generated by Sue Lead at "
                     f"{clock.now_utc():%Y-%m-%d %H:%M:%S} UTC", "Page 1 of 1"):
        assert expected in text, (expected, text)
    printed = events("training_record.printed", team.tom)
    assert len(printed) == 1
    assert db.session.get(AuditTransaction, printed[0].transaction_id).user_id == team.lead.id


def test_the_own_record_prints_too_and_a_long_record_numbers_its_pages(app, team):
    client = client_for(app, team.tom)
    for n in range(3, 12):
        revision = effective_revision(team.p, new_document(team.p, number=f"SOP-QA-{n:03d}"))
        train(team.tom, revision)
    response = client.get("/training/records/mine.pdf")
    assert response.status_code == 200
    text = pdf_text(response.data)
    assert "Page 1 of 2" in text and "Page 2 of 2" in text
    assert text.count(READ_AND_UNDERSTOOD) == 10
    assert START.date().isoformat() in text
