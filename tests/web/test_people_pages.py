"""People and their job functions through the pages: a coordinator grants and ends job functions and the person's
training follows in the same transaction; refusals name the field and write nothing; readers cannot change."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core.audit.views import record_history
from core.db import db, transaction
from core.org import JobFunction
from core.testing.pages import alerts, count, events, field_errors
from features.support.documents import TODAY, effective_revision, hold, new_document
from testkit.plugin import post_form
from tests.web.test_read_and_sign import client_for, text_of
from training.models import CANCELLED, OPEN, TrainingAssignment, UserJobFunction


@pytest.fixture
def coord_c(app, p, coordinator):
    return client_for(app, coordinator)


@pytest.fixture
def newcomer(make_user, p):
    return make_user("nina.new", roles={"operator"}, full_name="Nina Newcomer", department_id=p.department_id,
                     supervisor_id=p.reviewer.id)


def assignments(user) -> list[TrainingAssignment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == user.id)
                                   .order_by(TrainingAssignment.id)))


def held_rows(user) -> list[tuple[int, str, str | None]]:
    db.session.expire_all()
    return [(h.job_function_id, h.valid_from.isoformat(), h.valid_to.isoformat() if h.valid_to else None)
            for h in db.session.scalars(sa.select(UserJobFunction).where(UserJobFunction.user_id == user.id)
                                        .order_by(UserJobFunction.id))]


def grant(client, user, job_function_id, valid_from=TODAY, reason="", token_from=None):
    path = f"/training/people/{user.username}"
    return post_form(client, f"{path}/job-functions", {"job_function_id": job_function_id,
                                                       "valid_from": str(valid_from), "reason": reason},
                     token_from=token_from or path)


def end(client, user, held_id, valid_to=TODAY, reason="Moved to packaging", token_from=None):
    path = f"/training/people/{user.username}"
    return post_form(client, f"{path}/job-functions/{held_id}/end", {"valid_to": str(valid_to), "reason": reason},
                     token_from=token_from or path)


def held_id(user, job_function_id) -> int:
    return db.session.scalar(sa.select(UserJobFunction.id).where(UserJobFunction.user_id == user.id,
                                                                 UserJobFunction.job_function_id == job_function_id))


# --- granting -------------------------------------------------------------------------------------------------------


def test_granting_a_job_function_assigns_the_effective_documents_it_requires(p, coord_c, newcomer):
    mixing = effective_revision(p, new_document(p, "SOP-QA-001"))
    cleaning = effective_revision(p, new_document(p, "SOP-QA-002", title="Cleaning of the line"))
    effective_revision(p, new_document(p, "SOP-QA-003", title="Not for mixers", audience_job_function_ids=[]))
    assert assignments(newcomer) == []
    response = grant(coord_c, newcomer, p.job_function_id, reason="HR ticket 4711")
    assert response.status_code == 303
    page = coord_c.get(response.headers["Location"])
    assert alerts(page) == [f"OP-MIX granted to nina.new from {TODAY}; 2 training assignments created."]
    assert [(a.item.source_id, a.status, a.source_type) for a in assignments(newcomer)] == [
        (mixing.id, OPEN, "job_function"), (cleaning.id, OPEN, "job_function")]
    text = text_of(page)
    assert f"Job functions held today (1) OP-MIX — Mixing operator · from {TODAY}" in text
    assert "Open training 2" in text
    trail = record_history(UserJobFunction, held_id(newcomer, p.job_function_id))
    assert [(e.tx.username, e.tx.reason) for e in trail] == [("cora.coord", "HR ticket 4711")]


def test_a_back_dated_grant_is_recorded_from_that_day(p, coord_c, newcomer):
    response = grant(coord_c, newcomer, p.job_function_id, valid_from=TODAY - timedelta(days=14))
    assert response.status_code == 303
    assert held_rows(newcomer) == [(p.job_function_id, str(TODAY - timedelta(days=14)), None)]


def test_a_first_day_later_than_today_or_not_a_date_is_refused_on_its_field(p, coord_c, newcomer):
    response = grant(coord_c, newcomer, p.job_function_id, valid_from=TODAY + timedelta(days=1))
    assert response.status_code == 422
    assert field_errors(response) == [f"From (first day held): {TODAY + timedelta(days=1)} is later than today "
                                      f"({TODAY}): enter the change on its day."]
    response = grant(coord_c, newcomer, p.job_function_id, valid_from="03/03/2025")
    assert field_errors(response) == ["From (first day held): Write the date as YYYY-MM-DD."]
    response = grant(coord_c, newcomer, "", valid_from=TODAY)
    assert field_errors(response) == ["Job function: Choose the job function to grant."]
    assert held_rows(newcomer) == []


def test_a_job_function_already_held_is_not_granted_again_even_from_an_earlier_day(p, coord_c):
    hold([p.operator], p.job_function_id, days_ago=30)
    response = grant(coord_c, p.operator, p.job_function_id, valid_from=TODAY - timedelta(days=60))
    assert response.status_code == 422
    assert field_errors(response) == [f"Job function: otto.operator already holds OP-MIX (from "
                                      f"{TODAY - timedelta(days=30)})."]
    assert len(held_rows(p.operator)) == 1


def test_a_deactivated_job_function_cannot_be_granted(p, coord_c, newcomer):
    with transaction(reason="Line closed"):
        db.session.get(JobFunction, p.job_function_id).active = False
    page = text_of(coord_c.get(f"/training/people/{newcomer.username}"))
    assert "OP-MIX" not in page.split("Grant a job function")[1]
    response = grant(coord_c, newcomer, p.job_function_id)
    assert response.status_code == 422
    assert field_errors(response) == ["Job function: Job function does not exist or is no longer in use."]
    assert held_rows(newcomer) == []


# --- ending ---------------------------------------------------------------------------------------------------------


def test_ending_a_job_function_cancels_the_open_training_it_required(p, coord_c):
    hold([p.operator], p.job_function_id, days_ago=30)
    revision = effective_revision(p, new_document(p))
    assert [(a.item.source_id, a.status) for a in assignments(p.operator)] == [(revision.id, OPEN)]
    response = end(coord_c, p.operator, held_id(p.operator, p.job_function_id))
    assert response.status_code == 303
    page = coord_c.get(response.headers["Location"])
    assert alerts(page) == [f"OP-MIX ended for otto.operator: no longer held from {TODAY}; 1 open training "
                            f"assignment cancelled."]
    [assignment] = assignments(p.operator)
    assert (assignment.status, assignment.closed_reason) == (CANCELLED, f"Job function OP-MIX ended on {TODAY}")
    assert held_rows(p.operator) == [(p.job_function_id, str(TODAY - timedelta(days=30)), str(TODAY))]
    text = text_of(page)
    assert "Job functions held today (0)" in text
    assert f"Earlier job functions (1) Job function From No longer held from OP-MIX — Mixing operator " \
           f"{TODAY - timedelta(days=30)} {TODAY}" in text
    trail = record_history(UserJobFunction, held_id(p.operator, p.job_function_id))
    assert (trail[-1].tx.username, trail[-1].tx.reason) == ("cora.coord", "Moved to packaging")
    assert trail[-1].changes[0].fields == [("Held until (exclusive)", "—", str(TODAY))]


def test_an_end_before_the_start_is_refused_on_its_field_and_nothing_changes(p, coord_c):
    hold([p.operator], p.job_function_id, days_ago=30)
    revision = effective_revision(p, new_document(p))
    response = end(coord_c, p.operator, held_id(p.operator, p.job_function_id), valid_to=TODAY - timedelta(days=31))
    assert response.status_code == 422
    assert field_errors(response) == ["No longer held from: The end date cannot be before the start date."]
    assert held_rows(p.operator) == [(p.job_function_id, str(TODAY - timedelta(days=30)), None)]
    assert [(a.item.source_id, a.status) for a in assignments(p.operator)] == [(revision.id, OPEN)]


def test_ending_needs_a_reason_and_a_day_not_later_than_today(p, coord_c):
    hold([p.operator], p.job_function_id, days_ago=30)
    row = held_id(p.operator, p.job_function_id)
    response = end(coord_c, p.operator, row, reason="")
    assert response.status_code == 422
    assert field_errors(response) == ["Reason for change: Reason for change is required."]
    response = end(coord_c, p.operator, row, valid_to=TODAY + timedelta(days=3))
    assert field_errors(response) == [f"No longer held from: {TODAY + timedelta(days=3)} is later than {TODAY}: "
                                      f"enter the change on its day."]
    assert held_rows(p.operator) == [(p.job_function_id, str(TODAY - timedelta(days=30)), None)]


def test_training_another_held_job_function_requires_stays_open(p, coord_c):
    with transaction():
        other = JobFunction(code="OP-PKG", name="Packaging operator", department_id=p.department_id)
        db.session.add(other)
    hold([p.operator], p.job_function_id, days_ago=30)
    hold([p.operator], other.id, days_ago=30)
    revision = effective_revision(p, new_document(p, audience_job_function_ids=[p.job_function_id, other.id]))
    response = end(coord_c, p.operator, held_id(p.operator, p.job_function_id))
    assert "0 open training assignments cancelled" in alerts(coord_c.get(response.headers["Location"]))[0]
    assert [(a.item.source_id, a.status) for a in assignments(p.operator)] == [(revision.id, OPEN)]


# --- finding people, and who may change ---------------------------------------------------------------------------


def test_people_are_found_by_name_department_and_job_function(p, coord_c, newcomer):
    hold([p.operator], p.job_function_id, days_ago=3)
    page = text_of(coord_c.get("/training/people/?q=otto"))
    assert "Otto Operator otto.operator — — OP-MIX" in page and "Nina" not in page
    page = text_of(coord_c.get(f"/training/people/?department={p.department_id}"))
    assert "Nina Newcomer nina.new Quality Assurance Sam Supervisor none" in page and "Otto" not in page
    page = text_of(coord_c.get(f"/training/people/?job_function={p.job_function_id}"))
    assert "1 shown" in page and "otto.operator" in page


def test_the_person_page_shows_department_and_supervisor_and_is_linked_from_the_user_page(p, coord_c, newcomer):
    text = text_of(coord_c.get(f"/training/people/{newcomer.username}"))
    assert "Site / department — / Quality Assurance Supervisor Sam Supervisor (sam.supervisor)" in text
    user_page = coord_c.get(f"/admin/users/{newcomer.id}").get_data(as_text=True)
    assert 'href="/training/people/nina.new"' in user_page


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_only_a_training_coordinator_grants_or_ends_job_functions(app, p, make_user, newcomer, role):
    hold([p.operator], p.job_function_id, days_ago=3)
    someone = make_user(f"someone.{role}", roles={role})
    client = client_for(app, someone)
    if role == "supervisor":  # sees their direct report, without the forms
        with transaction(reason="New supervisor"):
            db.session.get(type(p.operator), p.operator.id).supervisor_id = someone.id
        page = text_of(client.get(f"/training/people/{p.operator.username}"))
        assert "OP-MIX" in page and "Grant a job function" not in page and "End OP-MIX" not in page
    assert grant(client, newcomer, p.job_function_id, token_from="/account").status_code == 403
    assert end(client, p.operator, held_id(p.operator, p.job_function_id), token_from="/account").status_code == 403
    assert held_rows(newcomer) == []
    assert held_rows(p.operator)[0][2] is None
    assert count(TrainingAssignment) == 0
    denied = [json.loads(e.detail) for e in events("permission.denied")]
    assert [(d["permission"], d["method"]) for d in denied] == [("training.manage", "POST")] * 2


def test_a_supervisor_sees_only_their_direct_reports(app, p, make_user):
    boss = make_user("bo.boss", roles={"supervisor"}, full_name="Bo Boss")
    with transaction(reason="Reporting line"):
        db.session.get(type(p.operator), p.operator.id).supervisor_id = boss.id
    client = client_for(app, boss)
    listing = text_of(client.get("/training/people/"))
    assert "Otto Operator" in listing and "Ada Author" not in listing
    assert client.get(f"/training/people/{p.operator.username}").status_code == 200
    assert client.get(f"/training/people/{p.author.username}").status_code == 403
    assert client.get(f"/training/records/{p.author.id}").status_code == 403
    assert client.get(f"/training/records/{p.operator.id}.pdf").status_code == 200
    denied = [json.loads(e.detail) for e in events("permission.denied")]
    assert [d.get("scope") for d in denied] == ["not a direct report"] * 2
