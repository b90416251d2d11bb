"""The validation pages as an inspector would check them: QA approves the protocol text with a signature, a validation
engineer starts a run, the run page shows every step with expected and actual results and links the failed steps to
their test incidents, the executor signs Executed and another person Reviews and Approves, the PDF carries the
signature manifestation, the trace matrix flags what is not verified, and nobody does more than their role allows."""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from core.org import Department, Site
from core.testing.pages import alerts, count, events, field_errors
from signatures.models import Signature
from testkit.plugin import PASSWORD, login, post_form, totp_code
from validation import services, views
from validation.models import (
    COMPLETED,
    EXECUTED,
    FAILED,
    QUEUED,
    REVIEWED,
    RUN_APPROVED,
    ProtocolVersion,
    StepResult,
    ValidationRun,
)

TAG_RE = re.compile(r"<[^>]+>")
CANARY = "validation/canaries/canary.feature"
CANARY_CODE = "validation/canaries (step code)"


def text_of(response) -> str:
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def client_for(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


@dataclass
class Team:
    engineer: Any
    qa: Any
    qa2: Any
    both: Any  # validation engineer and QA approver: may execute, and review runs of others
    auditor: Any
    operator: Any


@pytest.fixture
def team(make_user) -> Team:
    with transaction():
        site = Site(code="VAL", name="Validation site")
        department = Department(site=site, code="CSV", name="Computer system validation")
        db.session.add_all([site, department])
        db.session.flush()
        place = {"site_id": site.id, "department_id": department.id}
    return Team(
        engineer=make_user("eve.engineer", roles={"validation_engineer"}, full_name="Eve Engineer", **place),
        qa=make_user("quinn.qa", roles={"qa_approver"}, full_name="Quinn QA", **place),
        qa2=make_user("quincy.qa", roles={"qa_approver"}, full_name="Quincy QA", **place),
        both=make_user("bo.both", roles={"validation_engineer", "qa_approver"}, full_name="Bo Both", **place),
        auditor=make_user("ada.auditor", roles={"auditor"}, full_name="Ada Auditor"),
        operator=make_user("otto.operator", roles={"operator"}, full_name="Otto Operator"),
    )


def expected_version(client, url: str) -> str:
    return re.search(r'name="expected_version"[^>]*value="(\d*)"', client.get(url).get_data(as_text=True)).group(1)


def sign(client, url: str, user, meaning: str, **fields):
    data = {"meaning": meaning, "expected_version": expected_version(client, url), "password": PASSWORD,
            "totp_code": totp_code(user), **fields}
    return post_form(client, url, data)


def approve_files(client, user, paths: list[str], **fields):
    return sign(client, "/validation/protocols/approve", user, "Approved", paths=paths, **fields)


def synchronous(monkeypatch) -> list[int]:
    """Execute a started run inside the request instead of in a background process."""
    launched: list[int] = []

    def run_now(run_id: int) -> None:
        launched.append(run_id)
        services.execute(run_id)

    monkeypatch.setattr(views, "launch", run_now)
    return launched


def latest_run() -> ValidationRun:
    db.session.expire_all()
    return db.session.scalar(sa.select(ValidationRun).order_by(ValidationRun.id.desc()))


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


# --- the whole path: approve, execute, inspect, sign, print -----------------------------------------------------------


def test_canary_protocol_approved_executed_signed_and_printed_through_the_pages(app, team, monkeypatch):
    launched = synchronous(monkeypatch)
    qa = client_for(app, team.qa)
    engineer = client_for(app, team.engineer)

    # not yet approved: the run is refused, naming the file and the step code, and nothing is queued
    response = post_form(engineer, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    assert response.status_code == 409
    assert any("Protocol CANARY cannot run" in a and f"{CANARY} (not yet approved)" in a
               and f"{CANARY_CODE} (not yet approved)" in a for a in alerts(response))
    assert count(ValidationRun) == 0 and launched == []

    # QA approves the file's exact text and the step code's manifest: one signature each, meaning Approved, bound to
    # the SHA-256 of each
    page = text_of(qa.get("/validation/protocols/approve"))
    assert CANARY in page and CANARY_CODE in page and "Not yet approved" in page
    response = approve_files(qa, team.qa, [CANARY, CANARY_CODE])
    assert response.status_code == 302, text_of(response)
    version = db.session.scalar(sa.select(ProtocolVersion).where(ProtocolVersion.path == CANARY))
    assert version.version == 1
    assert version.sha256 == services.sha256_of(services.protocol_dir("CANARY") / "canary.feature")
    code = db.session.scalar(sa.select(ProtocolVersion).where(ProtocolVersion.path == CANARY_CODE))
    assert code.content == services.step_code_manifest("CANARY") and "  validation/capture.py\n" in code.content
    for record in (version, code):
        signature = db.session.scalar(sa.select(Signature).where(Signature.record_type == "val_protocol_version",
                                                                 Signature.record_id == record.id))
        assert (signature.printed_name, signature.meaning) == ("Quinn QA", "Approved")
    protocols = text_of(qa.get("/validation/protocols"))
    assert "Approved (version 1)" in protocols and "Quinn QA" in protocols and CANARY_CODE in protocols
    assert "Quinn QA — Approved —" in text_of(qa.get(f"/validation/protocols/view?path={CANARY}"))

    # the engineer starts the run (executed synchronously here) and lands on the run page
    overview = text_of(engineer.get("/validation/"))
    assert "CANARY — Runner canaries (tool adequacy)" in overview
    response = post_form(engineer, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    run = latest_run()
    assert response.status_code == 302 and response.headers["Location"] == f"/validation/runs/{run.id}"
    assert launched == [run.id]
    assert (run.status, run.result, run.executor_id) == (COMPLETED, FAILED, team.engineer.id)
    assert (run.scenarios, run.steps, run.passed, run.failed, run.not_run) == (4, 12, 7, 3, 2)

    page = engineer.get(f"/validation/runs/{run.id}")
    text = text_of(page)
    assert 'http-equiv="refresh"' not in page.get_data(as_text=True)
    assert "Completed (to be signed)" in text and "Eve Engineer (eve.engineer)" in text
    assert f"{CANARY} {version.sha256} version 1, approved by Quinn QA" in text
    assert f"{CANARY_CODE} {code.sha256} version 1, approved by Quinn QA" in text
    assert "Files of validation/canaries (step code) (5)" in text
    assert "Control: a correct expected value passes" in text
    # every step with its expected and actual result and outcome
    assert "Then the result is 4 the result is 4 the result is 4 passed" in text
    assert "Then the result is 5 the result is 5 the result is 4" in text
    assert "When a step that has no definition runs Performed without error." in text
    assert "undefined" in text and "RuntimeError: canary: unexpected error inside a step" in text
    assert "number: 2" in text  # evidence
    # each failed step links its test incident (a deviation)
    failed = list(db.session.scalars(sa.select(StepResult).where(StepResult.run_id == run.id,
                                                                 StepResult.outcome.in_(["failed", "undefined"]))))
    assert len(failed) == 3 and all(s.incident is not None for s in failed)
    body = page.get_data(as_text=True)
    for step in failed:
        assert f'href="/deviations/{step.incident.id}">{step.incident.number}</a>' in body
    assert engineer.get(f"/deviations/{failed[0].incident.id}").status_code == 200
    assert text.count("Not yet signed") == 3
    assert "Sign as executed" in text and "Review (sign)" not in text
    printed = pdf_text(engineer.get(f"/validation/runs/{run.id}.pdf").data)
    assert printed.count("not yet signed") == 3 and "Completed (to be signed)" in printed

    # only the executor signs Executed; QA cannot review before that
    assert "Sign as executed" not in text_of(qa.get(f"/validation/runs/{run.id}"))
    response = sign(qa, f"/validation/runs/{run.id}/sign-review", team.qa, "Reviewed")
    assert response.status_code == 409 and any("review" in a.lower() and "executed" in a.lower()
                                               for a in alerts(response))
    response = sign(engineer, f"/validation/runs/{run.id}/sign-executed", team.engineer, "Executed",
                    comment="Canaries behave as designed")
    assert response.status_code == 302, text_of(response)
    assert latest_run().status == EXECUTED

    # QA reviews, then approves; a failed run needs an approval comment
    response = sign(qa, f"/validation/runs/{run.id}/sign-review", team.qa, "Reviewed")
    assert response.status_code == 302, text_of(response)
    assert latest_run().status == REVIEWED
    signatures = count(Signature)
    response = sign(qa, f"/validation/runs/{run.id}/sign-approve", team.qa2, "Approved")
    assert response.status_code == 401  # the signer is the logged-in user: another person's code is refused
    response = sign(qa, f"/validation/runs/{run.id}/sign-approve", team.qa, "Approved")
    assert response.status_code == 422
    assert any("has failed steps: approving it needs a comment" in e for e in field_errors(response))
    assert count(Signature) == signatures and latest_run().status == REVIEWED
    response = sign(qa, f"/validation/runs/{run.id}/sign-approve", team.qa, "Approved",
                    comment="Canaries fail as designed; incidents closed as expected behaviour")
    assert response.status_code == 302, text_of(response)
    assert latest_run().status == RUN_APPROVED

    text = text_of(qa.get(f"/validation/runs/{run.id}"))
    assert "Approved by QA" in text and "Not yet signed" not in text
    for name, meaning in (("Eve Engineer", "Executed"), ("Quinn QA", "Reviewed"), ("Quinn QA", "Approved")):
        assert re.search(rf"{meaning} \w+ {name} \(\S+\) \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC {meaning}", text)
    assert "Canaries fail as designed" in text

    # the executed protocol as a PDF: steps, outcomes, incidents and every signature's manifestation
    response = qa.get(f"/validation/runs/{run.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert f"filename=validation-run-{run.id}-CANARY.pdf" in response.headers["Content-Disposition"]
    printed = pdf_text(response.data)
    assert f"run {run.id} (CANARY)" in printed and "Approved by QA" in printed
    assert "Then the result is 5" in printed and "FAILED" in printed and "PASSED" in printed
    assert "UNDEFINED" in printed and "RuntimeError: canary: unexpected error inside a step" in printed
    for step in failed:
        assert step.incident.number in printed
    executed = db.session.scalar(sa.select(Signature).where(Signature.record_type == "val_run",
                                                           Signature.meaning == "Executed"))
    assert f"Eve Engineer — Executed — {executed.signed_at:%Y-%m-%d %H:%M:%S} UTC" in printed
    assert "Quinn QA — Reviewed —" in printed and "Quinn QA — Approved —" in printed
    assert "Canaries behave as designed" in printed
    assert re.search(r"Page 1 of \d+", printed)
    assert [json.loads(e.detail)["run"] for e in events("validation_run.printed")] == [run.id, run.id]


def test_the_executor_cannot_review_or_approve_their_own_run(app, team, monkeypatch):
    synchronous(monkeypatch)
    assert approve_files(client_for(app, team.qa), team.qa, [CANARY, CANARY_CODE]).status_code == 302
    both = client_for(app, team.both)
    post_form(both, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    run = latest_run()
    assert sign(both, f"/validation/runs/{run.id}/sign-executed", team.both, "Executed").status_code == 302
    assert "Review (sign)" not in text_of(both.get(f"/validation/runs/{run.id}"))
    signatures = count(Signature)
    response = sign(both, f"/validation/runs/{run.id}/sign-review", team.both, "Reviewed")
    assert response.status_code == 403
    assert any("Segregation of duties: the executor of" in a for a in alerts(response))
    assert count(Signature) == signatures and latest_run().status == EXECUTED
    # the attempt is a security event, with what the executor was told
    refused = [json.loads(e.detail) for e in events("action.refused", team.both)]
    assert [(r["path"], r["status"], r["refusal"]) for r in refused] == [
        (f"/validation/runs/{run.id}/sign-review", 403, "NotPermitted")]
    assert refused[0]["message"].startswith("Segregation of duties: the executor of")
    # another engineer cannot sign someone else's run as executed either
    other = client_for(app, team.engineer)
    assert "Review (sign)" not in text_of(other.get(f"/validation/runs/{run.id}"))
    assert other.get(f"/validation/runs/{run.id}/sign-review").status_code == 403


# --- protocol files ---------------------------------------------------------------------------------------------------


@dataclass
class Copy:
    feature: Any  # the copied canary.feature
    path: str  # its recorded path
    code: str  # the recorded path of the copy's step code


@pytest.fixture
def own_protocols(tmp_path, monkeypatch) -> Copy:
    """A copy of the canary protocol (feature file and step definitions) that a test may change; recorded paths of a
    folder outside the installed packages are absolute."""
    folder = tmp_path / "canaries"
    shutil.copytree(services.protocol_dir("CANARY"), folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setitem(services.PROTOCOL_DIRS, "CANARY", str(folder))
    return Copy(folder / "canary.feature", str(folder / "canary.feature"), f"{folder}{services.STEP_CODE_SUFFIX}")


def test_a_file_changed_after_approval_cannot_run_until_approved_again_with_a_reason(app, team, own_protocols,
                                                                                    monkeypatch):
    launched = synchronous(monkeypatch)
    qa = client_for(app, team.qa)
    engineer = client_for(app, team.engineer)
    own = own_protocols
    assert approve_files(qa, team.qa, [own.path, own.code]).status_code == 302

    own.feature.write_text(own.feature.read_text() + "\n  Scenario: Added after approval\n    Given the number 1\n")
    assert "1 changed" in text_of(engineer.get("/validation/"))
    assert "Changed since its approved version" in text_of(engineer.get("/validation/protocols"))
    view = text_of(engineer.get("/validation/protocols/view", query_string={"path": own.path}))
    assert "+ Scenario: Added after approval" in view and "Changes since approved version 1" in view

    response = post_form(engineer, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    assert response.status_code == 409
    assert any(f"{own.path} (changed since its approved version)" in a for a in alerts(response))
    assert count(ValidationRun) == 0 and launched == []

    # a new version of a changed file needs the reason; refused before the password is even checked
    signatures = count(Signature)
    response = approve_files(qa, team.qa, [own.path])
    assert response.status_code == 422
    assert any("Reason for the new version" in e and f"Say why {own.path} changed" in e
               for e in field_errors(response))
    assert count(Signature) == signatures
    response = approve_files(qa, team.qa, [own.path], reason="Scenario added for issue 6")
    assert response.status_code == 302, text_of(response)
    versions = list(db.session.scalars(sa.select(ProtocolVersion).where(ProtocolVersion.path == own.path)
                                       .order_by(ProtocolVersion.version)))
    assert [(v.version, v.status) for v in versions] == [(1, "superseded"), (2, "approved")]
    assert versions[1].reason == "Scenario added for issue 6" and "Added after approval" in versions[1].content


def test_changed_step_code_is_shown_with_its_files_and_cannot_run_until_approved_again(app, team, own_protocols,
                                                                                      monkeypatch):
    launched = synchronous(monkeypatch)
    qa = client_for(app, team.qa)
    engineer = client_for(app, team.engineer)
    own = own_protocols
    overview = text_of(engineer.get("/validation/"))
    assert "CANARY — Runner canaries (tool adequacy)" in overview and "1 Not yet approved 0 0 2 not yet approved" in (
        overview)
    assert approve_files(qa, team.qa, [own.path, own.code]).status_code == 302
    assert "1 Approved (version 1) 2 0 0" in text_of(engineer.get("/validation/"))

    steps = own.feature.parent / "test_canaries.py"
    before = services.sha256_of(steps)
    steps.write_text(steps.read_text().replace("return number * 2", "return 4"))
    assert "1 Changed since its approved version 1 1 changed 0" in text_of(engineer.get("/validation/"))
    listing = text_of(engineer.get("/validation/protocols"))
    assert f"{own.code} " in listing and f"Changed since its approved version {steps} changed" in listing
    view = text_of(engineer.get("/validation/protocols/view", query_string={"path": own.code}))
    assert f"Changed since its approved version: {steps} changed" in view and "Kind Step code" in view
    assert f"-{before} {steps} +{services.sha256_of(steps)} {steps}" in view, "the manifest's changes"
    assert f"{steps} changed since the approved version" in view and "return 4" in view, "the file's current text"
    assert "validation/capture.py" in view and "def pytest_bdd_after_step" in view

    response = post_form(engineer, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    assert response.status_code == 409 and launched == []
    assert any(f"{own.code} (changed since its approved version: {steps} changed)" in a for a in alerts(response))
    page = qa.get("/validation/protocols/approve").get_data(as_text=True)
    assert f'value="{own.code}"' in page and f'value="{own.path}"' not in page, "only the step code is pending"
    assert f"{steps} changed" in html.unescape(page)
    response = approve_files(qa, team.qa, [own.code], reason="Doubling step simplified")
    assert response.status_code == 302, text_of(response)
    code = db.session.scalar(sa.select(ProtocolVersion).where(ProtocolVersion.path == own.code,
                                                              ProtocolVersion.status == "approved"))
    assert (code.version, code.reason) == (2, "Doubling step simplified")
    assert f"{services.sha256_of(steps)}  {steps}\n" in code.content
    response = post_form(engineer, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    assert response.status_code == 302 and len(launched) == 1


def test_several_files_are_approved_in_one_ceremony_with_one_signature_each(app, team, own_protocols):
    second = own_protocols.feature.parent / "second.feature"
    second.write_text("Feature: Second\n  Scenario: Control\n    Given the number 2\n", encoding="utf-8")
    qa = client_for(app, team.qa)
    response = approve_files(qa, team.qa, [own_protocols.path, str(second)])
    assert response.status_code == 302, text_of(response)
    versions = list(db.session.scalars(sa.select(ProtocolVersion)))
    assert len(versions) == 2
    assert count(Signature) == 2


def test_only_protocol_files_can_be_viewed(app, team):
    client = client_for(app, team.auditor)
    assert client.get(f"/validation/protocols/view?path={CANARY}").status_code == 200
    assert client.get("/validation/protocols/view", query_string={"path": CANARY_CODE}).status_code == 200
    for path in ("app.py", "../app.py", "/etc/passwd", "instance/secret_key", f"{CANARY}/../../../app.py"):
        assert client.get("/validation/protocols/view", query_string={"path": path}).status_code == 404, path


def test_approving_needs_a_file_and_the_password(app, team):
    qa = client_for(app, team.qa)
    response = approve_files(qa, team.qa, [])
    assert response.status_code == 422
    assert any("Choose at least one feature file" in e for e in field_errors(response))
    response = sign(qa, "/validation/protocols/approve", team.qa, "Approved", paths=[CANARY], password="wrong")
    assert response.status_code == 401 and count(ProtocolVersion) == 0


# --- trace matrix -----------------------------------------------------------------------------------------------------


def test_trace_matrix_flags_requirements_without_a_passing_executed_scenario(app, team, monkeypatch):
    from validation import bdd

    shipped = bdd.load_urs()
    # a requirement added to the URS before any scenario verifies it
    monkeypatch.setattr(bdd, "load_urs", lambda: [*shipped, {
        "id": "URS-999", "title": "Added requirement", "text": "Not yet verified.", "area": "platform",
        "reference": "", "risk": "low"}])
    load_urs = bdd.load_urs
    rows = services.trace_matrix()
    uncovered = [r for r in rows if not r.scenarios]
    covered = [r for r in rows if r.scenarios]
    assert [r.requirement["id"] for r in uncovered] == ["URS-999"] and covered and len(rows) == len(load_urs())
    client = client_for(app, team.auditor)
    page = client.get("/validation/trace")
    text = text_of(page)
    assert f"{len(rows)} requirements" in text
    row = re.search(rf'<tr id="req-{uncovered[0].requirement["id"]}".*?</tr>', page.get_data(as_text=True), re.S)
    assert row and "No scenario verifies this requirement" in html.unescape(row.group(0))
    assert "Not yet executed" in text  # nothing has run in this database
    assert "Runner canaries" not in text and "Control: a correct expected value passes" not in text

    flagged = client.get("/validation/trace?flagged=1").get_data(as_text=True)
    assert flagged.count('<tr id="req-') == sum(1 for r in rows if r.flag)

    response = client.get("/validation/trace.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert re.search(r"attachment; filename=trace-matrix-\d{8}-\d{6}Z\.csv", response.headers["Content-Disposition"])
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == ",".join(services.TRACE_COLUMNS)
    assert any(line.startswith(uncovered[0].requirement["id"] + ",") for line in lines[1:])


# --- who sees what ----------------------------------------------------------------------------------------------------


def test_an_operator_sees_no_validation_page(app, team):
    client = client_for(app, team.operator)
    for path in ("/validation/", "/validation/protocols", "/validation/trace", "/validation/trace.csv"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "(audit.view)" in html.unescape(response.get_data(as_text=True))
    assert 'href="/validation/"' not in client.get("/").get_data(as_text=True)


def test_an_auditor_reads_everything_but_starts_and_signs_nothing(app, team, monkeypatch):
    launched = synchronous(monkeypatch)
    assert approve_files(client_for(app, team.qa), team.qa, [CANARY, CANARY_CODE]).status_code == 302
    with transaction():
        run = services.create_run("CANARY", executor=team.engineer)
    auditor = client_for(app, team.auditor)
    overview = auditor.get("/validation/")
    assert overview.status_code == 200 and "Start run" not in text_of(overview)
    assert 'href="/validation/"' in auditor.get("/").get_data(as_text=True)
    for path in ("/validation/protocols", f"/validation/runs/{run.id}", f"/validation/runs/{run.id}.pdf",
                 "/validation/trace", "/validation/trace.csv", f"/validation/protocols/view?path={CANARY}"):
        assert auditor.get(path).status_code == 200, path
    runs = count(ValidationRun)
    response = post_form(auditor, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
    assert response.status_code == 403 and "(validation.execute)" in html.unescape(response.get_data(as_text=True))
    assert count(ValidationRun) == runs and launched == []
    assert auditor.get("/validation/protocols/approve").status_code == 403
    assert auditor.get(f"/validation/runs/{run.id}/sign-review").status_code == 403
    assert auditor.get(f"/validation/runs/{run.id}/sign-executed").status_code == 403


def test_a_queued_run_page_refreshes_and_shows_progress(app, team):
    assert approve_files(client_for(app, team.qa), team.qa, [CANARY, CANARY_CODE]).status_code == 302
    with transaction():
        run = services.create_run("CANARY", executor=team.engineer)
    auditor = client_for(app, team.auditor)
    response = auditor.get(f"/validation/runs/{run.id}")
    assert '<meta http-equiv="refresh" content="3">' in response.get_data(as_text=True)
    assert response.headers["Refresh"] == "3"
    assert "Queued: 0 scenario(s) and 0 step(s) recorded so far" in text_of(response)
    assert "queued for more than 2 minutes" not in text_of(response)
    # nobody picked it up (no background process here): after 2 minutes the page says so and where to look
    clock.freeze(clock.now_utc() + timedelta(minutes=3))
    text = text_of(auditor.get(f"/validation/runs/{run.id}"))
    assert "queued for more than 2 minutes without starting" in text and f"run-{run.id}.log" in text
    assert run.status == QUEUED
    assert "Abandon the run" not in text  # auditors read only
    response = post_form(auditor, f"/validation/runs/{run.id}/abandon", {"reason": "Server restarted"},
                         token_from=f"/validation/runs/{run.id}")
    refusal = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 403 and "(validation.execute) or" in refusal and "(validation.approve)" in refusal
    denied = [json.loads(e.detail) for e in events("permission.denied", team.auditor)]
    assert denied == [{"method": "POST", "path": f"/validation/runs/{run.id}/abandon",
                       "permission": "validation.execute or validation.approve"}]
    db.session.expire_all()
    assert run.status == QUEUED

    # the executor abandons it with a reason; it becomes a runner error and the page stops refreshing
    engineer = client_for(app, team.engineer)
    url = f"/validation/runs/{run.id}/abandon"
    response = post_form(engineer, url, {"reason": ""}, token_from=f"/validation/runs/{run.id}",
                         follow_redirects=True)
    assert "Reason for abandoning the run is required." in text_of(response)
    assert run.status == QUEUED
    response = post_form(engineer, url, {"reason": "Server restarted"}, token_from=f"/validation/runs/{run.id}",
                         follow_redirects=True)
    db.session.expire_all()
    assert run.status == "error" and "Abandoned by Eve Engineer: Server restarted" in text_of(response)
    assert "Refresh" not in response.headers


def test_an_unknown_protocol_or_run_is_refused(app, team):
    engineer = client_for(app, team.engineer)
    response = post_form(engineer, "/validation/runs/start", {"protocol": "XQ"}, token_from="/validation/")
    assert response.status_code == 422 and any("Protocol must be one of: IQ, OQ, PQ, CANARY" in a
                                                for a in alerts(response))
    response = post_form(engineer, "/validation/runs/start", {}, token_from="/validation/")
    assert response.status_code == 422 and "Protocol is required." in alerts(response)
    assert count(ValidationRun) == 0
    assert engineer.get("/validation/runs/999").status_code == 404


# --- the real background process --------------------------------------------------------------------------------------


def test_a_run_started_from_the_page_executes_in_the_background(app, team, monkeypatch, tmp_path):
    """The real launch: `flask validation execute` in a process of its own against this test's database."""
    monkeypatch.setattr(app, "instance_path", str(tmp_path))  # the run's log file goes there
    processes = []
    real_launch = views.launch

    def tracked(run_id: int):
        process = real_launch(run_id)
        processes.append(process)
        return process

    monkeypatch.setattr(views, "launch", tracked)
    assert approve_files(client_for(app, team.qa), team.qa, [CANARY, CANARY_CODE]).status_code == 302
    engineer = client_for(app, team.engineer)
    try:
        response = post_form(engineer, "/validation/runs/start", {"protocol": "CANARY"}, token_from="/validation/")
        assert response.status_code == 302
        run_url = response.headers["Location"]
        deadline = time.monotonic() + 60
        while True:
            db.session.rollback()  # see what the background process committed meanwhile
            page = engineer.get(run_url)
            if "Completed (to be signed)" in text_of(page) or time.monotonic() > deadline:
                break
            assert 'http-equiv="refresh"' in page.get_data(as_text=True) or "Runner error" not in text_of(page)
            time.sleep(0.5)
        text = text_of(page)
        log = (tmp_path / "validation-runs" / f"run-{latest_run().id}.log")
        assert "Completed (to be signed)" in text, (text[:3000], log.read_text() if log.exists() else "no log")
        assert 'http-equiv="refresh"' not in page.get_data(as_text=True)
        assert "4 scenario(s), 12 step(s): 7 passed, 3 failed, 2 not run" in text
        assert processes[0].wait(timeout=30) == 0
        assert "protocol=CANARY run=" in log.read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
