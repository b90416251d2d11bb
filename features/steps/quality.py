"""OQ steps for quality events (deviations, CAPA, change control) and platform hardening, driving the same use
cases the pages call, one unit of work per step."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import clock
from core.db import db
from features.steps.access import account, client_of
from features.steps.documents import attempt, revision
from features.support.inspection import scalar_count
from qms.capa import services as capa_services
from qms.capa.services import ActionInput
from qms.change_control import services as cc
from qms.deviations import services as deviations
from qms.deviations.models import Deviation
from qms.documents.publish import item_of
from signatures.models import Signature
from training.models import SOURCE_CAPA_ACTION, TrainingAssignment


def fresh(record):
    db.session.refresh(record)
    return record


def signatures_on(record_type: str, record_id: int) -> list[Signature]:
    return list(db.session.scalars(sa.select(Signature).where(Signature.record_type == record_type,
                                                              Signature.record_id == record_id)
                                   .order_by(Signature.id)))


def signed(action, record, user, **kwargs):
    from features.support.documents import prove, run

    return run(action, record, actor=user, proof=prove(user), expected_row_version=fresh(record).row_version,
               **kwargs)


# --- deviations -------------------------------------------------------------------------------------------------------


def report(ctx, username: str, title: str, **overrides):
    from core.org import Department
    from features.support.documents import run

    site_id = db.session.scalar(sa.select(Department.site_id).where(Department.id == ctx.p.department_id))
    now = clock.now_utc()
    fields = {"title": title, "occurred_at": now - timedelta(hours=3), "discovered_at": now - timedelta(hours=1),
              "site_id": site_id, "department_id": ctx.p.department_id, "area": "Mixer M-12",
              "description": "Detergent B was used instead of A.", "immediate_actions": "Batch quarantined.",
              **overrides}
    return run(deviations.report_deviation, actor=account(ctx, username), **fields)


@when(parsers.parse('"{username}" reports the deviation "{title}"'))
def report_deviation(ctx, evidence, username, title):
    ctx.deviation = report(ctx, username, title)
    evidence.record("Deviation", f"{ctx.deviation.number}: {title}")


@then(parsers.parse('it is numbered "{pattern}" and is "{status}"'))
def numbered(ctx, evidence, pattern, status):
    expected = pattern.replace("<year>", str(clock.now_utc().year))
    evidence.actual(f"{ctx.deviation.number}, {fresh(ctx.deviation).status_label}")
    assert ctx.deviation.number == expected and ctx.deviation.status_label == status


@when(parsers.parse('"{username}" starts the investigation and submits the deviation'))
def start_and_submit(ctx, evidence, username):
    from features.support.documents import run

    user = account(ctx, username)
    run(deviations.start_investigation, ctx.deviation, actor=user)
    from features.support.documents import prove

    attempt(ctx, deviations.submit_for_approval, ctx.deviation, actor=user, proof=prove(user),
            expected_row_version=fresh(ctx.deviation).row_version)


@then(parsers.parse('the submission is refused until "{fields}" are recorded'))
def submission_refused(ctx, evidence, fields):
    evidence.actual(f"refused: {ctx.refusal}; status {fresh(ctx.deviation).status_label}; signatures "
                    f"{len(signatures_on('qms_deviation', ctx.deviation.id))}")
    assert ctx.refusal and fields in ctx.refusal and ctx.deviation.status_label == "Under investigation"
    assert signatures_on("qms_deviation", ctx.deviation.id) == []


@when(parsers.parse('"{username}" classifies it "{classification}", records the root cause and submits it with his '
                    'signature'))
def classify_and_submit(ctx, evidence, username, classification):
    from features.support.documents import run

    user = account(ctx, username)
    run(deviations.classify, ctx.deviation, actor=user, classification=classification,
        justification="Product quality possibly affected.", reason="Classified after first assessment")
    run(deviations.record_investigation, ctx.deviation, actor=user, investigation="Interviewed the operator.",
        root_cause="The SOP did not name the detergent.", root_cause_category="procedure",
        reason="Investigation complete")
    signed(deviations.submit_for_approval, ctx.deviation, user)


@then(parsers.parse('the deviation is "{status}"'))
def deviation_is(ctx, evidence, status):
    evidence.actual(f"{ctx.deviation.number}: {fresh(ctx.deviation).status_label}")
    assert ctx.deviation.status_label == status


@when(parsers.parse('"{username}" tries to approve the closure of his own deviation'))
def own_closure(ctx, evidence, username):
    from features.support.documents import prove

    user = account(ctx, username)
    attempt(ctx, deviations.approve_closure, ctx.deviation, actor=user, proof=prove(user),
            expected_row_version=fresh(ctx.deviation).row_version)


@then(parsers.parse('it is refused naming the permission "{permission}" and the deviation is "{status}"'))
def closure_refused(ctx, evidence, permission, status):
    evidence.actual(f"refused: {ctx.refusal}; {ctx.deviation.number} is {fresh(ctx.deviation).status_label}")
    assert ctx.refusal and permission in ctx.refusal and ctx.deviation.status_label == status


@when(parsers.parse('"{username}" approves the closure with her signature'))
def approve_closure(ctx, evidence, username):
    signed(deviations.approve_closure, ctx.deviation, account(ctx, username))


@then(parsers.parse('the deviation is "{status}" with the signatures "{first}" by "{a}" and "{second}" by "{b}"'))
def deviation_closed(ctx, evidence, status, first, a, second, b):
    found = [(s.meaning, s.printed_name) for s in signatures_on("qms_deviation", ctx.deviation.id)]
    evidence.actual(f"{ctx.deviation.number}: {fresh(ctx.deviation).status_label}; signatures {found}")
    assert ctx.deviation.status_label == status and found == [(first, a), (second, b)]


@when(parsers.parse('"{username}" reports a deviation that occurred after it was discovered'))
def report_backwards(ctx, evidence, username):
    now = clock.now_utc()
    ctx.before = scalar_count(Deviation)
    try:
        report(ctx, username, "Wrong order", occurred_at=now - timedelta(hours=1),
               discovered_at=now - timedelta(hours=2))
        ctx.refusal = ctx.field = None
    except Exception as exc:  # the refusal is what the step observes
        ctx.refusal, ctx.field = str(getattr(exc, "message", exc)), getattr(exc, "field", None)
    db.session.rollback()


@then(parsers.parse('the report is refused naming the field "{field}" and nothing is saved'))
def report_refused(ctx, evidence, field):
    evidence.actual(f"refused on {ctx.field}: {ctx.refusal}; deviations: {scalar_count(Deviation)}")
    assert ctx.refusal and ctx.field == field and scalar_count(Deviation) == ctx.before == 0


@given(parsers.parse('revision 2.0 of the document became effective and "{username}" signed it four hours after the '
                     'deviation occurred'))
def trained_after(ctx, evidence, username):
    from features.support.documents import effective_revision, train

    train(account(ctx, username), revision(ctx, "1.0"))
    clock.freeze(clock.now_utc() + timedelta(days=10))
    effective_revision(ctx.p, ctx.document, content="# Purpose\n\nClean it with detergent A.\n")
    clock.freeze(clock.now_utc() + timedelta(days=2))
    ctx.occurred = clock.now_utc().replace(second=0, microsecond=0)
    clock.freeze(ctx.occurred + timedelta(hours=4))
    train(account(ctx, username), revision(ctx, "2.0"))
    clock.freeze(ctx.occurred + timedelta(days=1))
    evidence.record("Deviation occurred", ctx.occurred.isoformat())


@when(parsers.parse('"{username}" reports the deviation with "{person}" involved and "{number}" concerned'))
def report_with_people(ctx, evidence, username, person, number):
    ctx.deviation = report(ctx, username, "Mixer cleaned with the wrong detergent", occurred_at=ctx.occurred,
                           discovered_at=ctx.occurred + timedelta(hours=1), person_ids=[account(ctx, person).id],
                           document_ids=[ctx.document.id])
    [ctx.line] = deviations.training_adequacy(ctx.deviation)


@then(parsers.parse('the adequacy panel shows "{person}" not trained on revision {label} then, trained on revision '
                    '{trained} only'))
def not_trained_then(ctx, evidence, person, label, trained):
    then_ = ctx.line.then
    evidence.actual(f"at {ctx.occurred.isoformat()}: required {then_.required.label}, qualified {then_.qualified}, "
                    f"trained {then_.trained.label if then_.trained else None}: {then_.reason}")
    assert then_.required.label == label and then_.qualified is False and then_.trained.label == trained


@then(parsers.parse('the panel shows "{person}" qualified on revision {label} today'))
def qualified_today(ctx, evidence, person, label):
    now = ctx.line.now
    evidence.actual(f"today: qualified {now.qualified}, trained {now.trained.label}, completed {now.completed_at}")
    assert now.qualified is True and now.trained.label == label and now.completed_at > ctx.occurred


# --- CAPA -------------------------------------------------------------------------------------------------------------


@given(parsers.parse('a CAPA owned by "{owner}" with a retraining action on "{number}" for "{person}"'))
def capa_with_retraining(ctx, evidence, owner, number, person):
    from features.support.documents import run

    user = account(ctx, owner)
    ctx.capa = run(capa_services.create_capa, actor=user, title="Mixer not cleaned between batches",
                   source_type="audit_finding", source_reference="Internal audit IA-2025-04, finding 3",
                   problem_statement="Residue found in mixer M-2 after cleaning.",
                   root_cause="Operators skipped the rinse step; SOP unclear.", owner_id=user.id)
    ctx.action = run(capa_services.add_action, ctx.capa, ActionInput(
        kind="preventive", description="Retrain mixing operators", owner_id=user.id,
        due_on=clock.now_utc().date() + timedelta(days=14), retraining=True, document_ids=[ctx.document.id],
        user_ids=[account(ctx, person).id]), actor=user, expected_row_version=fresh(ctx.capa).row_version)
    evidence.record("CAPA", f"{ctx.capa.number}, retraining action {ctx.action.id}")


@given(parsers.parse('"{username}" has approved the CAPA plan'))
def plan_approved(ctx, evidence, username):
    signed(capa_services.approve_plan, ctx.capa, account(ctx, username))
    ctx.signatures_before = scalar_count(Signature)


@when(parsers.parse('"{username}" approves the CAPA plan and the retraining action with her signatures'))
def approve_plan_and_action(ctx, evidence, username):
    from features.support.documents import prove, run

    user = account(ctx, username)
    signed(capa_services.approve_plan, ctx.capa, user)
    result = run(capa_services.approve_retraining_action, ctx.action, actor=user, proof=prove(user),
                 expected_row_version=fresh(ctx.capa).row_version)
    evidence.record("Retraining approved", f"{result.created} assignment(s) created")


@when(parsers.parse('"{username}" approves the retraining action with her signature'))
def approve_action(ctx, evidence, username):
    from features.support.documents import prove

    user = account(ctx, username)
    try:
        from features.support.documents import run

        run(capa_services.approve_retraining_action, ctx.action, actor=user, proof=prove(user),
            expected_row_version=fresh(ctx.capa).row_version)
        ctx.refusal = None
    except RuntimeError as exc:
        ctx.refusal = str(exc)
    db.session.expire_all()


@then(parsers.parse('"{person}" has an open assignment on revision {label} with the source "{source}" naming the '
                    'CAPA'))
def capa_assignment(ctx, evidence, person, label, source):
    rows = list(db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.source_id == ctx.action.id)))
    evidence.actual("; ".join(f"{r.user_id} rev {r.item.version_label} {r.status}: {r.assigned_reason}" for r in rows))
    assert [(r.user_id, r.item_id, r.status) for r in rows] == [
        (account(ctx, person).id, item_of(revision(ctx, label)).id, "open")]
    assert ctx.capa.number in rows[0].assigned_reason


@when(parsers.parse('"{username}" records the retraining action as done'))
def action_done_early(ctx, evidence, username):
    attempt(ctx, capa_services.complete_action, ctx.action, actor=account(ctx, username), evidence="All trained")


@then(parsers.parse('it is refused naming "{who}"'))
def refused_naming(ctx, evidence, who):
    evidence.actual(f"refused: {ctx.refusal}")
    assert ctx.refusal and who in ctx.refusal


@when(parsers.parse('"{username}" completes the CAPA retraining'))
def capa_trained(ctx, evidence, username):
    from features.support.documents import train

    train(account(ctx, username), revision(ctx, "1.0"))


@when(parsers.parse('"{username}" records the action as done, starts the effectiveness check and signs it effective'))
def effectiveness(ctx, evidence, username):
    from features.support.documents import run

    user = account(ctx, username)
    run(capa_services.complete_action, fresh(ctx.action), actor=user, evidence="Training records complete")
    run(capa_services.start_effectiveness_check, ctx.capa, actor=user, expected_row_version=fresh(ctx.capa).row_version,
        due_on=clock.now_utc().date() + timedelta(days=30))
    signed(capa_services.record_effectiveness, ctx.capa, user, result="No residue in 20 inspections", effective=True)


@when(parsers.parse('"{username}" closes the CAPA with her signature'))
def close_capa(ctx, evidence, username):
    signed(capa_services.close, ctx.capa, account(ctx, username))


@then(parsers.parse('the CAPA is "{status}" with the signatures "{a}", "{b}", "{c}", "{d}"'))
def capa_closed(ctx, evidence, status, a, b, c, d):
    meanings = [s.meaning for s in capa_services.signatures_of(ctx.capa)]
    evidence.actual(f"{ctx.capa.number}: {fresh(ctx.capa).status_label}; signatures {meanings}")
    assert ctx.capa.status_label == status and meanings == [a, b, c, d]


@then("the retraining action is still planned, with no new signature and no CAPA assignment")
def action_unchanged(ctx, evidence):
    action = fresh(ctx.action)
    n = scalar_count(TrainingAssignment, TrainingAssignment.source_type == SOURCE_CAPA_ACTION)
    evidence.actual(f"action {action.status}, approved at {action.approved_at}; signatures added "
                    f"{scalar_count(Signature) - ctx.signatures_before}; CAPA assignments {n}")
    assert action.status == "planned" and action.approved_at is None and n == 0
    assert scalar_count(Signature) == ctx.signatures_before


# --- change control ---------------------------------------------------------------------------------------------------


@given(parsers.parse('a change control owner "{username}" who also authors documents'))
def change_owner(make_user, ctx, evidence, username):
    ctx.accounts[username] = make_user(username, roles={"supervisor", "document_author"}, full_name="Carl Change")
    evidence.record("Account", f"{username}: supervisor and document author")


@given(parsers.parse('an approved change control on "{number}" owned by "{username}"'))
def approved_change(ctx, evidence, number, username):
    from features.support.documents import run

    owner = account(ctx, username)
    ctx.change = run(cc.create_change, actor=owner, document_ids=[ctx.document.id],
                     title="New line clearance checklist", description="Add a signed checklist step before mixing.",
                     justification="Deviation follow-up: line clearance was skipped.", change_type="document",
                     risk_level="medium", risk_rationale="Procedure change; no product impact.", owner_id=owner.id)
    signed(cc.submit, ctx.change, owner)
    signed(cc.approve, ctx.change, account(ctx, "quinn.qa"))
    evidence.record("Change control", f"{ctx.change.number}: {fresh(ctx.change).status_label}")


@when(parsers.parse('"{username}" starts the implementation and the new revision {label} is approved, effective '
                    'today'))
def implement(ctx, evidence, username, label):
    from features.support.documents import approve_as, review_as, route, run, submit
    from qms.documents.models import Revision

    owner = account(ctx, username)
    run(cc.start_implementation, ctx.change, actor=owner, expected_row_version=fresh(ctx.change).row_version)
    draft = db.session.get(Revision, fresh(ctx.change).documents[0].revision_id)
    assert draft.label == label
    route(ctx.p, draft, actor=owner)
    submit(ctx.p, draft, actor=owner)
    review_as(ctx.p.reviewer, draft)
    approve_as(ctx.p.qa, draft, effective_on=clock.now_utc().date())
    evidence.record("Revision", f"{draft.audit_title()} started from {ctx.change.number}, approved")


@when(parsers.parse('"{username}" moves the change to verification'))
def to_verification(ctx, evidence, username):
    from features.support.documents import run

    run(cc.to_verification, ctx.change, actor=account(ctx, username),
        expected_row_version=fresh(ctx.change).row_version)


@then(parsers.parse('"{username}" cannot close it while revision {label} is not yet effective'))
@then(parsers.parse('"{username}" cannot close it while "{who}" has open training on revision {label}'))
def cannot_close(ctx, evidence, username, label, who=None):
    from features.support.documents import prove

    user = account(ctx, username)
    attempt(ctx, cc.close, ctx.change, actor=user, proof=prove(user),
            expected_row_version=fresh(ctx.change).row_version)
    evidence.actual(f"refused: {ctx.refusal}; {ctx.change.number} is {fresh(ctx.change).status_label}")
    expected = who if who else f"not yet effective: SOP-QA-001 revision {label}"
    assert ctx.refusal and expected in ctx.refusal and ctx.change.status_label == "Verification"


@when(parsers.parse('"{username}" closes it with open training, justifying "{justification}"'))
def close_with_override(ctx, evidence, username, justification):
    signed(cc.close_with_open_training, ctx.change, account(ctx, username), justification=justification)


@then(parsers.parse('the change control is "{status}" and its closure note names "{who}"'))
def change_closed(ctx, evidence, status, who):
    change = fresh(ctx.change)
    evidence.actual(f"{change.number}: {change.status_label}; closure note: {change.closure_override_note}")
    assert change.status_label == status and who in change.closure_override_note


@then(parsers.parse('the closure is signed "{meaning}" by "{name}"'))
def closure_signed(ctx, evidence, meaning, name):
    last = signatures_on("qms_change_control", ctx.change.id)[-1]
    evidence.actual(f"{last.printed_name}: {last.meaning} — {last.comment}")
    assert (last.meaning, last.printed_name) == (meaning, name)


# --- platform ---------------------------------------------------------------------------------------------------------


@when(parsers.parse('"{username}" opens the home page and the login page'))
def open_pages(app, ctx, evidence, username):
    ctx.pages = {"/": client_of(app, ctx, username).get("/"), "/login": app.test_client().get("/login")}


@then("both pages are sent with a content security policy allowing only this server, frame denial, no content "
      "sniffing, a same-origin referrer policy and no caching")
def security_headers(ctx, evidence):
    for path, response in ctx.pages.items():
        h = response.headers
        evidence.record(path, f"CSP '{h.get('Content-Security-Policy')}'; X-Frame-Options {h.get('X-Frame-Options')}; "
                              f"{h.get('X-Content-Type-Options')}; Referrer-Policy {h.get('Referrer-Policy')}; "
                              f"Cache-Control {h.get('Cache-Control')}")
        csp = h.get("Content-Security-Policy", "")
        assert response.status_code == 200 and "default-src 'self'" in csp
        assert h.get("X-Frame-Options") == "DENY" and h.get("X-Content-Type-Options") == "nosniff"
        assert h.get("Referrer-Policy") == "same-origin" and "no-store" in h.get("Cache-Control", "")
    evidence.actual("both pages: CSP default-src 'self', X-Frame-Options DENY, nosniff, same-origin, no-store")


@then("no page references a script, style sheet or font on another server")
def no_cdn(ctx, evidence):
    external = sorted({m for r in ctx.pages.values()
                       for m in re.findall(r'(?:src|href)="((?:https?:)?//[^"]+)"', r.get_data(as_text=True))})
    evidence.actual(f"external references: {external or 'none'}")
    assert external == []
