"""The records of change control, deviations and CAPA: numbered, audited, signable (the lifecycles build on them)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import clock
from core.db import db, transaction
from features.support.documents import new_document
from qms.capa.models import Capa, CapaAction, CapaActionDocument, CapaActionPerson
from qms.change_control.models import ChangeControl, ChangeDocument, ChangeTask
from qms.deviations.models import Deviation, DeviationDocument, DeviationPerson
from qms.numbering import next_number
from signatures.services import record_for


def test_each_quality_record_is_numbered_audited_and_resolvable_for_signatures(app, p):
    document = new_document(p)
    now = clock.now_utc()
    with transaction():
        deviation = Deviation(number=next_number("DEV"), title="Mixer run without line clearance",
                              occurred_at=now - timedelta(hours=5), discovered_at=now - timedelta(hours=1),
                              site_id=document.department.site_id, department_id=document.department_id,
                              description="Batch 4711 started before the line clearance was signed.",
                              owner_id=p.qa.id)
        deviation.people = [DeviationPerson(user_id=p.operator.id)]
        deviation.documents = [DeviationDocument(document_id=document.id)]
        db.session.add(deviation)
    with transaction():
        capa = Capa(number=next_number("CAPA"), title="Retrain mixing operators on line clearance",
                    source_type="deviation", source_id=deviation.id, owner_id=p.qa.id,
                    problem_statement="Line clearance skipped under time pressure.")
        action = CapaAction(capa=capa, kind="corrective", description="Retrain on SOP-QA-001", owner_id=p.qa.id,
                            due_on=now.date() + timedelta(days=14), retraining=True)
        action.documents = [CapaActionDocument(document_id=document.id)]
        action.people = [CapaActionPerson(user_id=p.operator.id)]
        db.session.add(capa)
    with transaction():
        change = ChangeControl(number=next_number("CC"), title="New line clearance checklist",
                               description="Add a checklist step.", justification="Deviation follow-up",
                               change_type="document", risk_level="low", risk_rationale="Document change only",
                               owner_id=p.author.id)
        change.documents = [ChangeDocument(document_id=document.id)]
        change.tasks = [ChangeTask(title="Update SOP-QA-001", owner_id=p.author.id, due_on=now.date())]
        db.session.add(change)
    year = now.year
    assert (deviation.number, capa.number, change.number) == (f"DEV-{year}-0001", f"CAPA-{year}-0001",
                                                              f"CC-{year}-0001")
    for model in (Deviation, DeviationPerson, Capa, CapaAction, CapaActionDocument, ChangeControl, ChangeTask):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(version_class(model))) == 1, model
    assert record_for("qms_capa", capa.id) is capa
    assert record_for("qms_deviation", deviation.id) is deviation
    assert record_for("qms_change_control", change.id) is change
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_a_signature_binds_the_record_content_so_an_edit_changes_what_is_signed(app, p):
    with transaction():
        capa = Capa(number=next_number("CAPA"), title="Title", source_type="other", owner_id=p.qa.id,
                    problem_statement="Problem as first written.")
        db.session.add(capa)
    before = capa.canonical_content()
    assert b'"number":"CAPA-' in before and b"Problem as first written." in before
    with transaction(reason="Problem statement sharpened after the interviews"):
        capa.problem_statement = "Problem as finally written."
    assert capa.canonical_content() != before
    assert capa.signable_version == "draft v2"


def test_the_registers_list_and_filter_records_for_everyone_who_may_see_them(app, p):
    from testkit.plugin import login

    with transaction():
        for title in ("Mixer cleaning", "Label printer"):
            db.session.add(Capa(number=next_number("CAPA"), title=title, source_type="other", owner_id=p.qa.id,
                                problem_statement="Problem."))
    client = app.test_client()
    assert login(client, p.operator).status_code == 302
    page = client.get("/capa/?q=mixer").get_data(as_text=True)
    assert "Mixer cleaning" in page and "Label printer" not in page
    assert "Label printer" in client.get("/capa/?status=draft").get_data(as_text=True)
    assert "No records match." in client.get("/change-control/").get_data(as_text=True)
    assert client.get("/deviations/").status_code == 200
