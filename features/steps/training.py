"""OQ steps for training: assignments created by approvals and job functions, supersession, qualification at a
point in time (through the JSON API), training records, read and sign, release when trained."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import bulk, clock
from core.audit import AuditEvent, AuditTransaction
from core.db import db, transaction
from core.testing.pages import alerts, events
from features.steps.access import account, client_of
from features.steps.documents import revision, signatures
from features.support.inspection import scalar_count, text_of
from qms.documents import services
from qms.documents.models import RELEASE_WHEN_TRAINED
from qms.documents.publish import item_of
from signatures.models import READ_AND_UNDERSTOOD, Signature
from testkit.plugin import PASSWORD, csrf_token, totp_code
from training.models import COMPLETED, OPEN, TrainingAssignment, UserJobFunction

EXPECTED_RE = re.compile(r'<input[^>]*name="expected_version"[^>]*value="(\d*)"')
SOURCES = {"revision approved": "revision_approval", "job function granted": "job_function"}


def document_release():
    """The module holding the release use cases (moved out of qms.documents.services into qms.documents.release)."""
    try:
        from qms.documents import release
    except ImportError:
        return services
    return release


def assignments(*where) -> list[TrainingAssignment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(TrainingAssignment).where(*where)
                                   .order_by(TrainingAssignment.user_id, TrainingAssignment.id)))


@given(parsers.parse('{n:d} operators hold the job function "OP-MIX"'))
def operators_hold(make_user, ctx, evidence, n):
    from features.support.documents import hold

    ctx.operators = [make_user(f"op{i:02d}", roles={"operator"}, full_name=f"Operator {i}") for i in range(1, n + 1)]
    hold(ctx.operators, ctx.p.job_function_id)
    ctx.accounts.update({u.username: u for u in ctx.operators})
    evidence.record("Holders of OP-MIX", f"{n} operators (op01 … op{n:02d})")


@when(parsers.parse('"{username}" approves revision {label} effective in {days:d} days'))
def approve_in_days(ctx, evidence, username, label, days):
    from features.support.documents import approve_as

    ctx.transactions_before = scalar_count(AuditTransaction)
    try:
        approve_as(account(ctx, username), revision(ctx, label),
                   effective_on=clock.now_utc().date() + timedelta(days=days))
        ctx.refusal = None
    except RuntimeError as exc:
        ctx.refusal = str(exc)
    db.session.expire_all()
    evidence.record("Approval", ctx.refusal or f"{username} approved rev {label}")


@then(parsers.parse('{n:d} open assignments on revision {label} exist, each due on its effective date with the source '
                    '"{source}"'))
def open_assignments(ctx, evidence, n, label, source):
    rev = revision(ctx, label)
    rows = assignments(TrainingAssignment.item_id == item_of(rev).id)
    kinds = {(a.status, a.due_on, a.source_type, a.source_id) for a in rows}
    evidence.actual(f"{len(rows)} assignments on rev {label} (effective on {rev.effective_on}): "
                    f"{sorted(map(str, kinds))}")
    evidence.record("Assignments", len(rows))
    assert len(rows) == n and kinds == {(OPEN, rev.effective_on, SOURCES[source], rev.id)}
    assert {a.user_id for a in rows} == {u.id for u in ctx.operators}


@then("each assignment has its version row in the audit transaction of the approval")
def version_rows(ctx, evidence):
    from sqlalchemy_continuum import version_class

    vcls, svcls = version_class(TrainingAssignment), version_class(Signature)
    rows = assignments()
    tx_ids = set(db.session.scalars(sa.select(vcls.transaction_id).where(vcls.id.in_([a.id for a in rows]))))
    approval = db.session.scalar(sa.select(svcls.transaction_id).where(svcls.meaning == "Approved"))
    tx = db.session.get(AuditTransaction, approval)
    evidence.actual(f"{scalar_count(vcls)} version rows for {len(rows)} assignments, in transaction(s) "
                    f"{sorted(tx_ids)}; the 'Approved' signature is in transaction {approval} ('{tx.reason}')")
    assert scalar_count(vcls) == len(rows) and tx_ids == {approval}


@given(parsers.parse('writing training assignments fails with "{message}"'))
def assignments_fail(monkeypatch, evidence, message):
    def broken(*args, **kwargs):
        raise RuntimeError(f"{message} while writing assignments")

    monkeypatch.setattr(bulk, "bulk_insert", broken)
    evidence.record("Fault injected", f"core.bulk.bulk_insert raises '{message}'")


@then(parsers.parse('the approval fails with "{message}"'))
def approval_fails(ctx, evidence, message):
    evidence.actual(f"refused: {ctx.refusal}")
    assert ctx.refusal and message in ctx.refusal


@then(parsers.parse('revision {label} is "{status}" with no "{meaning}" signature and no training assignment'))
def nothing_written(ctx, evidence, label, status, meaning):
    rev = revision(ctx, label)
    signed, rows = signatures(rev, meaning), assignments()
    added = scalar_count(AuditTransaction) - ctx.transactions_before
    evidence.actual(f"rev {label}: {rev.status_label}, approved at {rev.approved_at}; '{meaning}' signatures: "
                    f"{len(signed)}; assignments: {len(rows)}; audit transactions added: {added}")
    assert rev.status_label == status and rev.approved_at is None and signed == [] and rows == []


@when(parsers.parse('writing training assignments works again and "{username}" approves revision {label} effective '
                    'in {days:d} days'))
def works_again(monkeypatch, ctx, evidence, username, label, days):
    monkeypatch.undo()
    approve_in_days(ctx, evidence, username, label, days)
    assert ctx.refusal is None


@given(parsers.parse("operator {n:d} has completed the training on revision {label}"))
@given(parsers.parse("operator {n:d} completes the training on revision {label}"))
def operator_trains(ctx, evidence, n, label):
    from features.support.documents import train

    train(ctx.operators[n - 1], revision(ctx, label))
    evidence.record("Completion", f"{ctx.operators[n - 1].username} signed rev {label}")


@when(parsers.parse("revision {label} is approved and becomes effective today"))
def approve_release_today(ctx, evidence, label):
    from features.support.documents import approved_revision, run

    rev = approved_revision(ctx.p, ctx.document, effective_on=clock.now_utc().date(),
                            content="# Purpose\n\nClean it with detergent A.\n")
    run(services.release_due, clock.now_utc().date())
    assert rev.label == label
    evidence.record("Release", f"rev {label} effective {clock.now_utc().date()}")


@then(parsers.parse("the training of operator {n:d} on revision {label} is still completed"))
def still_completed(ctx, evidence, n, label):
    [row] = assignments(TrainingAssignment.user_id == ctx.operators[n - 1].id,
                        TrainingAssignment.item_id == item_of(revision(ctx, label)).id)
    evidence.actual(f"{ctx.operators[n - 1].username} rev {label}: {row.status}, completed at {row.completed_at}")
    assert row.status == COMPLETED and row.signature_id is not None


@then(parsers.parse('the training of operator {n:d} on revision {label} is superseded with the reason "{reason}"'))
def superseded(ctx, evidence, n, label, reason):
    [row] = assignments(TrainingAssignment.user_id == ctx.operators[n - 1].id,
                        TrainingAssignment.item_id == item_of(revision(ctx, label)).id)
    evidence.actual(f"{ctx.operators[n - 1].username} rev {label}: {row.status} ({row.closed_reason})")
    assert row.status == "superseded" and row.closed_reason == reason


@then(parsers.parse("both operators have open training on revision {label}"))
def both_open(ctx, evidence, label):
    rows = assignments(TrainingAssignment.item_id == item_of(revision(ctx, label)).id,
                       TrainingAssignment.status == OPEN)
    evidence.actual(f"open on rev {label}: {sorted(r.user_id for r in rows)}")
    assert {r.user_id for r in rows} == {u.id for u in ctx.operators}


@when(parsers.parse('"{coordinator}" grants "{username}" the job function "{code}"'))
@when(parsers.parse('"{coordinator}" grants "{username}" the job function "{code}" again'))
def grant(ctx, evidence, coordinator, username, code):
    from training.people import services as training_services

    with transaction(reason="New assignment on the mixing line"):
        change = training_services.grant_job_function(account(ctx, username), ctx.p.job_function_id,
                                                      actor=account(ctx, coordinator))
    evidence.record("Grant", f"{code} to {username}: {change}")


@then(parsers.parse('"{username}" has open training on revision {label} with the source "{source}"'))
def has_open(ctx, evidence, username, label, source):
    rows = assignments(TrainingAssignment.user_id == account(ctx, username).id)
    evidence.actual("; ".join(f"rev {r.item.version_label} {r.status} ({r.source_type})" for r in rows))
    assert [(r.item_id, r.status, r.source_type) for r in rows] == [
        (item_of(revision(ctx, label)).id, OPEN, SOURCES[source])]
    ctx.assignment_id = rows[0].id


@when(parsers.parse('"{coordinator}" ends the job function "{code}" of "{username}"'))
def end(ctx, evidence, coordinator, code, username):
    from training.people import services as training_services

    held = db.session.scalars(sa.select(UserJobFunction).where(
        UserJobFunction.user_id == account(ctx, username).id, UserJobFunction.valid_to.is_(None))).one()
    with transaction(reason="Moved to packaging"):
        training_services.end_job_function(held, actor=account(ctx, coordinator))


@then(parsers.parse('that training is cancelled with a reason naming "{text}"'))
def that_cancelled(ctx, evidence, text):
    row = db.session.get(TrainingAssignment, ctx.assignment_id)
    db.session.refresh(row)
    evidence.actual(f"assignment {row.id}: {row.status} ({row.closed_reason})")
    assert row.status == "cancelled" and text in row.closed_reason


@when(parsers.parse('"{username}" is deactivated'))
def deactivated(ctx, evidence, username):
    from training.people import services as people

    with transaction(reason="Left the company"):
        people.deactivate_person(account(ctx, username), actor=None)


@then(parsers.parse('his open training is cancelled with the reason "{reason}" and his history is kept'))
def cancelled_on_deactivation(ctx, evidence, reason):
    rows = assignments(TrainingAssignment.user_id == ctx.p.operator.id)
    evidence.actual("; ".join(f"assignment {r.id}: {r.status} ({r.closed_reason})" for r in rows))
    assert len(rows) == 2 and not [r for r in rows if r.status == OPEN]
    assert rows[-1].status == "cancelled" and rows[-1].closed_reason == reason


# --- qualification through the JSON API ------------------------------------------------------------------------------


@given(parsers.parse('"{username}" completes the training on revision {label} one hour later'))
@when(parsers.parse('"{username}" completes the training on revision {label}'))
def user_trains(ctx, evidence, username, label):
    from features.support.documents import train

    rev = revision(ctx, label)
    if rev.effective_at is not None and clock.now_utc() < rev.effective_at + timedelta(hours=1):
        clock.freeze(rev.effective_at + timedelta(hours=1))
    assignment = train(account(ctx, username), rev)
    evidence.record("Completion", f"{username} signed rev {label} at {assignment.completed_at.isoformat()}")


@given(parsers.parse('"{username}" has a personal API token'))
def api_token(ctx, evidence, username):
    from core.auth import tokens

    with transaction():
        _token, ctx.token = tokens.create(account(ctx, username), name="MES line 4")
    ctx.token_owner = username
    evidence.record("API token", f"owner {username}, starts with {ctx.token[:10]}")


@when(parsers.parse("revision {label} is approved and becomes effective {days:d} days later"))
def approve_release_later(ctx, evidence, label, days):
    from features.support.documents import approved_revision, run

    rev = approved_revision(ctx.p, ctx.document, effective_on=clock.now_utc().date() + timedelta(days=days),
                            content="# Purpose\n\nClean it with detergent A.\n")
    clock.freeze(clock.now_utc() + timedelta(days=days))
    run(services.release_due, clock.now_utc().date())
    assert rev.label == label
    evidence.record("Release", f"rev {label} effective {clock.now_utc().date()}")


def ask(client, ctx, username: str, at=None):
    params = {"user": username, "document": ctx.document.number}
    if at is not None:
        params["at"] = at.isoformat().replace("+00:00", "Z")
    response = client.get("/api/v1/qualification", query_string=params,
                          headers={"Authorization": f"Bearer {ctx.token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@then(parsers.parse('the API answers that "{username}" is not qualified now: "{reason}"'))
def not_qualified_now(client, ctx, evidence, username, reason):
    answer = ask(client, ctx, username)
    evidence.actual(f"qualified={answer['qualified']}, current {answer['current_revision']}, trained "
                    f"{answer['trained_revision']}: {answer['reason']}")
    assert answer["qualified"] is False and answer["reason"] == reason


@then(parsers.parse('the API answers that "{username}" was qualified on revision {label} two hours after revision '
                    '{label2} took effect'))
@then(parsers.parse('the API still answers that "{username}" was qualified on revision {label} two hours after '
                    'revision {label2} took effect'))
def qualified_then(client, ctx, evidence, username, label, label2):
    at = revision(ctx, label2).effective_at + timedelta(hours=2)
    answer = ask(client, ctx, username, at)
    evidence.actual(f"at {answer['at']}: qualified={answer['qualified']}, current {answer['current_revision']}, "
                    f"trained {answer['trained_revision']} (completed {answer['completed_at']})")
    assert answer["qualified"] is True and answer["current_revision"] == answer["trained_revision"] == label


@then(parsers.parse('the API answers that "{username}" is qualified now on revision {label}'))
def qualified_now(client, ctx, evidence, username, label):
    answer = ask(client, ctx, username)
    evidence.actual(f"qualified={answer['qualified']}, trained {answer['trained_revision']}: {answer['reason']}")
    assert answer["qualified"] is True and answer["trained_revision"] == label


@then(parsers.parse('every API request is recorded in the audit trail under "{username}"'))
def api_audited(ctx, evidence, username):
    rows = db.session.execute(sa.select(AuditEvent, AuditTransaction).join(
        AuditTransaction, AuditTransaction.id == AuditEvent.transaction_id)
        .where(AuditEvent.event_type == "api.request")).all()
    evidence.actual(f"{len(rows)} 'api.request' events by {sorted({tx.username for _e, tx in rows})}, channel "
                    f"{sorted({tx.channel for _e, tx in rows})}")
    assert len(rows) == 4 and {tx.username for _e, tx in rows} == {username}


@then(parsers.parse('a token sent in the address is refused with "{error}"'))
def token_in_url(client, ctx, evidence, error):
    response = client.get("/api/v1/qualification", query_string={"user": "otto.operator", "document": "SOP-QA-001",
                                                                  "access_token": ctx.token})
    evidence.actual(f"HTTP {response.status_code}: {response.get_json()}")
    assert response.status_code == 400 and response.get_json()["error"] == error


# --- training record --------------------------------------------------------------------------------------------------


@when(parsers.parse('"{viewer}" prints the training record of "{username}"'))
def print_record(app, ctx, evidence, viewer, username):
    from pypdf import PdfReader

    response = client_of(app, ctx, viewer).get(f"/training/records/{account(ctx, username).id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    ctx.pdf = " ".join(" ".join((p.extract_text() or "") for p in PdfReader(io.BytesIO(response.data)).pages).split())
    evidence.record("Training record", f"{len(response.data)} bytes")


@then(parsers.parse('the PDF shows "{line}" and the signature "{manifestation}" with its UTC time and SHA-256'))
def record_pdf(ctx, evidence, line, manifestation):
    signature = db.session.scalar(sa.select(Signature).where(Signature.meaning == READ_AND_UNDERSTOOD))
    signed = f"Signed: {manifestation} — {signature.signed_at:%Y-%m-%d %H:%M:%S} UTC"
    found = {line: line in ctx.pdf, signed: signed in ctx.pdf, "SHA-256": f"SHA-256: {signature.content_sha256}"
             in ctx.pdf}
    evidence.actual(", ".join(f"'{k}': {'shown' if v else 'missing'}" for k, v in found.items()))
    assert all(found.values())


@then(parsers.parse('the print is recorded as "{event}" about "{username}" by "{viewer}"'))
def record_printed(ctx, evidence, event, username, viewer):
    printed = events(event, account(ctx, username))
    by = [db.session.get(AuditTransaction, e.transaction_id).username for e in printed]
    evidence.actual(f"{len(printed)} '{event}' event(s) about {username}, by {by}")
    assert by == [viewer]


# --- read and sign ----------------------------------------------------------------------------------------------------


@given(parsers.parse("revision {label} of the document is approved, effective in {days:d} days"))
def approved_later(ctx, evidence, label, days):
    from features.support.documents import approved_revision

    rev = approved_revision(ctx.p, ctx.document, effective_on=clock.now_utc().date() + timedelta(days=days),
                            content="# Purpose\n\nClean the **mixer** daily.\n")
    assert rev.label == label
    ctx.assignment = db.session.scalar(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id == ctx.p.operator.id, TrainingAssignment.item_id == item_of(rev).id))
    assert ctx.assignment is not None
    evidence.record("Assignment", f"{ctx.assignment.id}: otto.operator, rev {label}, due {ctx.assignment.due_on}")


@when(parsers.parse('"{username}" opens "My training"'))
def open_my_training(app, ctx, evidence, username):
    ctx.page = client_of(app, ctx, username).get("/my-training/")


@then(parsers.parse('the list shows "{entry}" as open training'))
def list_shows(ctx, evidence, entry):
    text = text_of(ctx.page)
    evidence.actual(f"HTTP {ctx.page.status_code}; '{entry}' listed: {entry in text}")
    assert ctx.page.status_code == 200 and entry in text


@when(parsers.parse('"{username}" opens the assignment'))
def open_assignment(app, ctx, evidence, username):
    ctx.page = client_of(app, ctx, username).get(f"/my-training/{ctx.assignment.id}")


@then(parsers.parse("the page shows the content of revision {label} and the opening time is recorded"))
def content_shown(ctx, evidence, label):
    row = db.session.get(TrainingAssignment, ctx.assignment.id)
    db.session.refresh(row)
    rendered = "<strong>mixer</strong>" in ctx.page.get_data(as_text=True)
    evidence.actual(f"HTTP {ctx.page.status_code}; rendered content of rev {label}: {rendered}; opened at "
                    f"{row.opened_at}")
    assert ctx.page.status_code == 200 and rendered and row.opened_at is not None


def post_signature(client, user, assignment_id: int):
    url = f"/my-training/{assignment_id}/sign"
    page = client.get(url)
    if page.status_code != 200:
        return page, client.post(url, data={"csrf_token": csrf_token(client, "/my-training/"), "password": PASSWORD,
                                            "totp_code": totp_code(user), "meaning": READ_AND_UNDERSTOOD})
    shown = EXPECTED_RE.search(page.get_data(as_text=True)).group(1)
    return page, client.post(url, data={"csrf_token": csrf_token(client, url), "password": PASSWORD,
                                        "totp_code": totp_code(user), "meaning": READ_AND_UNDERSTOOD, "comment": "",
                                        "expected_version": shown})


@when(parsers.parse('"{username}" signs it "Read and understood" with the password and the current authentication '
                    'code'))
@when(parsers.parse('"{username}" signs the assignment without having opened it'))
def sign_assignment(app, ctx, evidence, username):
    _page, ctx.response = post_signature(client_of(app, ctx, username), account(ctx, username), ctx.assignment.id)
    evidence.record("Signature", f"HTTP {ctx.response.status_code}")


@then(parsers.parse('the assignment is completed by a "{meaning}" signature of "{name}" bound to revision {label}'))
def completed(ctx, evidence, meaning, name, label):
    from signatures import services as signing

    row = db.session.get(TrainingAssignment, ctx.assignment.id)
    db.session.refresh(row)
    signature = db.session.get(Signature, row.signature_id)
    rev = revision(ctx, label)
    evidence.actual(f"assignment {row.status} at {row.completed_at}; signature {signature.printed_name} "
                    f"'{signature.meaning}' on {signature.record_type} {signature.record_id} v"
                    f"{signature.record_version}, valid: {signing.is_valid(signature, rev)}")
    assert row.status == COMPLETED and (signature.printed_name, signature.meaning) == (name, meaning)
    assert signature.record_id == rev.id and signing.is_valid(signature, rev)


@then(parsers.parse('the history on "My training" shows the completion with the printed name, meaning and UTC time'))
def history_shows(app, ctx, evidence):
    row = db.session.get(TrainingAssignment, ctx.assignment.id)
    text = text_of(client_of(app, ctx, "otto.operator").get("/my-training/"))
    shown = f"{row.completed_at:%Y-%m-%d %H:%M}"
    evidence.actual(f"history shows Otto Operator: {'Otto Operator' in text}, '{READ_AND_UNDERSTOOD}': "
                    f"{READ_AND_UNDERSTOOD in text}, time {shown}: {shown in text}, UTC: {'UTC' in text}")
    assert "Otto Operator" in text and READ_AND_UNDERSTOOD in text and shown in text and "UTC" in text


@then(parsers.parse('the signature is refused with "{message}" and the assignment stays open'))
def sign_refused(ctx, evidence, message):
    row = db.session.get(TrainingAssignment, ctx.assignment.id)
    db.session.refresh(row)
    evidence.actual(f"HTTP {ctx.response.status_code}: {alerts(ctx.response)}; assignment {row.status}; "
                    f"signatures: {scalar_count(Signature, Signature.meaning == READ_AND_UNDERSTOOD)}")
    assert ctx.response.status_code == 409 and any(message in a for a in alerts(ctx.response))
    assert row.status == OPEN and scalar_count(Signature, Signature.meaning == READ_AND_UNDERSTOOD) == 0


@when(parsers.parse('"{username}" opens and signs the assignment of "{owner}"'))
def other_signs(app, ctx, evidence, username, owner):
    client = client_of(app, ctx, username)
    ctx.other_responses = [client.get(f"/my-training/{ctx.assignment.id}"),
                           *post_signature(client, account(ctx, username), ctx.assignment.id)]


@then("both requests answer 404 and the assignment stays open and unopened")
def other_refused(ctx, evidence):
    row = db.session.get(TrainingAssignment, ctx.assignment.id)
    db.session.refresh(row)
    evidence.actual(f"HTTP {[r.status_code for r in ctx.other_responses]}; assignment {row.status}, opened at "
                    f"{row.opened_at}")
    assert {r.status_code for r in ctx.other_responses} == {404}
    assert row.status == OPEN and row.opened_at is None


@given(parsers.parse('document "{number}" is released "when trained" with revision {label} approved effective today'))
def when_trained(ctx, evidence, number, label):
    from features.support.documents import approved_revision, new_document, run

    document = new_document(ctx.p, number=number)
    run(services.update_document_metadata, document, actor=ctx.p.qa, release_policy=RELEASE_WHEN_TRAINED,
        audit_reason="Critical procedure: nobody works under it untrained")
    rev = approved_revision(ctx.p, document, effective_on=clock.now_utc().date())
    assert rev.label == label
    ctx.held = rev
    evidence.record("Document", f"{number}: release when trained; rev {label} approved, effective "
                                f"{rev.effective_on}")


@when(parsers.parse('the daily release runs for "{number}"'))
def release_for(ctx, evidence, number):
    from features.support.documents import run

    released = run(services.release_due, clock.now_utc().date())
    evidence.record("Released", ", ".join(r.audit_title() for r in released) or "nothing")


@then(parsers.parse('revision {label} of "{number}" is held'))
def is_held(ctx, evidence, label, number):
    db.session.refresh(ctx.held)
    untrained = assignments(TrainingAssignment.item_id == item_of(ctx.held).id, TrainingAssignment.status == OPEN)
    evidence.actual(f"{ctx.held.audit_title()}: {ctx.held.status_label}, effective on {ctx.held.effective_on}; "
                    f"open training: {len(untrained)}")
    assert ctx.held.status == "approved" and ctx.held.effective_on <= clock.now_utc().date() and untrained


@when(parsers.parse('operator {n:d} completes the training on revision {label} of "{number}"'))
def operator_trains_held(ctx, evidence, n, label, number):
    from features.support.documents import train

    train(ctx.operators[n - 1], ctx.held)


@when(parsers.parse('"{username}" releases revision {label} of "{number}" with open training, justifying '
                    '"{justification}"'))
def override(ctx, evidence, username, label, number, justification):
    from features.support.documents import prove, run, version

    user = account(ctx, username)
    run(document_release().override_release, ctx.held, actor=user, proof=prove(user),
        expected_row_version=version(ctx.held), justification=justification)


@then(parsers.parse('revision {label} of "{number}" is effective and the override note names operator {named:d} and '
                    'not operator {trained:d}'))
def override_done(ctx, evidence, label, number, named, trained):
    db.session.refresh(ctx.held)
    note = ctx.held.release_override_note
    evidence.actual(f"{ctx.held.audit_title()}: {ctx.held.status_label}; override note: {note}")
    assert ctx.held.status == "effective"
    assert ctx.operators[named - 1].username in note and ctx.operators[trained - 1].username not in note


@then(parsers.parse('the override is signed "{meaning}" by "{name}"'))
def override_signed(ctx, evidence, meaning, name):
    signed = signatures(ctx.held, meaning)
    evidence.actual(f"{[(s.printed_name, s.meaning, s.comment[:80]) for s in signed]}")
    assert [s.printed_name for s in signed] == [name]


