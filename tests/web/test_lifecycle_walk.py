"""Every declared transition of every record type, walked through its pages as a browser walks them.

For each transition and each state it starts from: a record is built in that state, the person allowed to act logs
in through the real pages, opens the record page, finds the transition's button there (its URL and label come from
the declaration), follows it, and submits the form exactly as the page renders it: every control, hidden ones
included, in document order (core.testing.pages), with only what a person types filled in (password, authentication
code, the required comment or justification, the required fields). The record must reach the declared next state,
and a signed step must leave the signature with the declared meaning. Web tests that post hand-made data cannot see a
form that renders its own data wrong (the change control's unsigned steps once sent `expected_version` twice, the
empty one first, and failed in every browser); this test does.

Also: the declarations are complete and consistent, and docs/lifecycles.md is what they generate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

import qms.capa.services  # noqa: F401  (each area's services declare its lifecycle)
import qms.change_control.services  # noqa: F401
import qms.deviations.services  # noqa: F401
import qms.documents.services  # noqa: F401
import training.read_and_sign.services  # noqa: F401
import validation.services  # noqa: F401
from core.auth.permissions import PERMISSIONS
from core.db import db, transaction
from core.testing.pages import alerts, field_errors, html_forms, parse_page, submit_form
from features.support.documents import (
    TODAY,
    approved_revision,
    effective_revision,
    hold,
    new_document,
    new_revision,
    prove,
    review_as,
    route,
    run,
    submit,
)
from signatures import ceremony
from signatures.lifecycle import DATE, LIFECYCLES, UNCHANGED, YES_NO, Lifecycle, Transition, markdown
from signatures.models import MEANINGS, Signature
from testkit.plugin import PASSWORD, totp_code
from tests.web.test_training_matrix_pages import client_for, text_of

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    """A record in the transition's source state, the person who acts, its page, and what they choose there."""

    record: Any
    user: Any
    page: str
    fill: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def world(p, make_user):
    return SimpleNamespace(
        p=p, make_user=make_user,
        owner=make_user("carl.change", roles={"supervisor", "document_author"}, full_name="Carl Change"),
        engineer=make_user("vera.val", roles={"validation_engineer"}, full_name="Vera Validation"))


# --- records in each state --------------------------------------------------------------------------------------------


def revision_case(w, action: str, source: str) -> Case:
    from qms.documents import services

    p = w.p
    document = new_document(p)
    if action == "submit":
        revision, user = route(p, new_revision(p, document)), p.author
    elif action in ("review", "reject"):
        revision, user = submit(p, route(p, new_revision(p, document))), p.reviewer
    elif action == "approve":
        revision, user = review_as(p.reviewer, submit(p, route(p, new_revision(p, document)))), p.qa
    elif action == "release-override":
        # released "when trained", approved with someone still to train: held, before its effective date
        run(services.update_document_metadata, document, actor=p.author, release_policy="when_trained",
            audit_reason="Released when trained")
        hold([p.operator], p.job_function_id)
        revision, user = approved_revision(p, document, effective_on=TODAY + timedelta(days=7)), p.qa
    else:
        revision, user = effective_revision(p, document), p.qa
    return Case(revision, user, f"/documents/{document.id}/revisions/{revision.id}")


def change_case(w, action: str, source: str) -> Case:
    from features.support.documents import train
    from qms.change_control import services as cc
    from tests.integration.test_change_control_lifecycle import implement, new_change, signed, version

    p, owner = w.p, w.owner
    documents = []
    if action == "close-override":  # someone assigned the change's revision has not trained
        waiting = w.make_user("wait.op", roles={"operator"}, full_name="Walter Waiting")
        hold([waiting], p.job_function_id)
        documents = [new_document(p)]
        train(waiting, effective_revision(p, documents[0]))
    change = new_change(owner, documents)
    order = ["draft", "submitted", "approved", "implementation", "verification"]
    for state in order[1:order.index(source) + 1]:
        if state == "submitted":
            signed(cc.submit, change, owner)
        elif state == "approved":
            signed(cc.approve, change, p.qa)
        elif state == "implementation" and documents:
            implement(p, owner, change)
            break
        elif state == "implementation":
            run(cc.start_implementation, change, actor=owner, expected_row_version=version(change))
        else:
            run(cc.to_verification, change, actor=owner, expected_row_version=version(change))
    user = owner if action in ("submit", "start", "verification") else p.qa
    return Case(change, user, f"/change-control/{change.id}")


def deviation_case(w, action: str, source: str) -> Case:
    from features.support.documents import version
    from qms.deviations import services
    from tests.integration.test_deviation_lifecycle import ready_for_submission, report

    p = w.p
    deviation = report(p)
    if source in ("investigation", "pending_approval"):
        ready_for_submission(p, deviation)
    if source == "pending_approval":
        run(services.submit_for_approval, deviation, actor=p.reviewer, proof=prove(p.reviewer),
            expected_row_version=version(deviation))
    user = p.qa if action in ("approve", "reject") else p.reviewer
    return Case(deviation, user, f"/deviations/{deviation.id}")


def _capa(w, state: str, **action):
    """A CAPA (owned by the supervisor) with one action, taken to `state`."""
    from qms.capa import services
    from tests.integration.test_capa_lifecycle import add, approve_plan, raise_capa, v

    p = w.p
    capa = raise_capa(p)
    act = add(p, capa, **action)
    if state in ("open", "actions done", "effectiveness_check", "effective"):
        approve_plan(p, capa)
    if state in ("actions done", "effectiveness_check", "effective"):
        run(services.complete_action, act, actor=p.reviewer, evidence="Done and recorded")
    if state in ("effectiveness_check", "effective"):
        run(services.start_effectiveness_check, capa, actor=p.reviewer, expected_row_version=v(capa),
            due_on=TODAY + timedelta(days=30))
    if state == "effective":
        run(services.record_effectiveness, capa, actor=p.reviewer, proof=prove(p.reviewer),
            expected_row_version=v(capa), result="No residue in 10 batches", effective=True)
    db.session.refresh(capa)
    return capa, act


def capa_case(w, action: str, source: str) -> Case:
    state = {"close": "effective", "start-effectiveness": "actions done"}.get(action, source)
    capa, _action = _capa(w, state)
    user = w.p.reviewer if action in ("start-effectiveness", "effectiveness") else w.p.qa
    return Case(capa, user, f"/capa/{capa.id}", {"effective": "yes"} if action == "effectiveness" else {})


def capa_action_case(w, action: str, source: str) -> Case:
    p = w.p
    if action == "approve-retraining" or (action == "cancel-action" and source == "planned"):
        document = new_document(p, audience_job_function_ids=[])
        effective_revision(p, document)
        hold([p.operator], p.job_function_id)
        capa, act = _capa(w, "open", retraining=True, document_ids=[document.id], job_function_ids=[p.job_function_id])
    else:
        capa, act = _capa(w, "draft" if action == "remove" else "open")
    user = p.reviewer if action in ("complete", "remove") else p.qa
    return Case(act, user, f"/capa/{capa.id}")


def run_case(w, action: str, source: str) -> Case:
    from validation.models import ValidationRun

    with transaction(reason="A run in the state the walk needs"):
        record = ValidationRun(protocol="CANARY", status=source, executor_id=w.engineer.id, scenarios=1, steps=1,
                               passed=1, result="passed" if source not in ("queued", "running") else None)
        db.session.add(record)
    user = w.p.qa if action in ("review", "approve") else w.engineer
    return Case(record, user, f"/validation/runs/{record.id}")


def assignment_case(w, action: str, source: str) -> Case:
    """Read and sign: the operator's open assignment on an approved revision; the record page is the assignment's
    page on My training (opening it records that the document was opened)."""
    from training.models import TrainingAssignment

    p = w.p
    hold([p.operator], p.job_function_id)
    approved_revision(p, new_document(p))
    assignment = db.session.scalar(sa.select(TrainingAssignment).where(TrainingAssignment.user_id == p.operator.id))
    return Case(assignment, p.operator, f"/my-training/{assignment.id}")


BUILDERS: dict[str, Callable[[Any, str, str], Case]] = {
    "document_revision": revision_case, "change_control": change_case, "deviation": deviation_case,
    "capa": capa_case, "capa_action": capa_action_case, "validation_run": run_case,
    "training_assignment": assignment_case,
}
STEPS = [(lc.name, t.action, source) for lc in LIFECYCLES.values() for t in lc.transitions.values()
         for source in t.source]


# --- the walk ---------------------------------------------------------------------------------------------------------


def typed(t: Transition, names: list[str], user) -> dict[str, Any]:
    """What a person types on the form: credentials, the required text and fields, nothing else."""
    fill: dict[str, Any] = {}
    if "password" in names:
        fill["password"] = PASSWORD
    if "totp_code" in names:
        fill["totp_code"] = totp_code(user)
    if t.text.required:
        fill[t.text.field] = f"Walked through the page: {t.action}"
    for extra in t.fields:
        if extra.required:
            fill[extra.name] = {DATE: (TODAY + timedelta(days=10)).isoformat(), YES_NO: "yes"}.get(
                extra.kind, f"Walked through the page: {extra.name}")
    return fill


def signatures_on(record, meaning: str, user) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Signature).where(
        Signature.record_type == record.signable_type, Signature.record_id == record.id,
        Signature.meaning == meaning, Signature.signer_id == user.id))


def walk(app, lc: Lifecycle, t: Transition, source: str, case: Case):
    client = client_for(app, case.user)
    page = client.get(case.page)
    assert page.status_code == 200, text_of(page)[:1000]
    with app.test_request_context():
        url = ceremony.url_of(lc, case.record, t.action)
    parsed = parse_page(page)
    if t.own_page:
        assert [text for href, text in parsed.links if href == url] == [t.label], \
            f"no button “{t.label}” to {url} on {case.page} for {case.user.username}"
        step = client.get(url)
        assert step.status_code == 200, text_of(step)[:1000]
        forms = [f for f in html_forms(step) if f.method == "post" and t.submit_label in [b[2] for b in f.buttons]]
        form_url = url
    else:
        forms = [f for f in parsed.forms if f.action == url and t.label in [b[2] for b in f.buttons]]
        form_url = case.page
    assert len(forms) == 1, f"one form for {t.action} expected, found {len(forms)}"
    form = forms[0]
    fill = {**typed(t, form.names(), case.user), **case.fill}
    signed_record = lc.signed_record(case.record)
    before = signatures_on(signed_record, t.meaning, case.user) if t.signed else 0
    response = submit_form(client, form, page_url=form_url, fill=fill, follow_redirects=True)
    assert response.status_code == 200, (alerts(response), field_errors(response), text_of(response)[:500])
    db.session.expire_all()
    record = db.session.get(type(case.record), case.record.id)
    expected = source if t.next == UNCHANGED else t.next
    assert lc.state_of(record) == expected, (alerts(response), field_errors(response))
    if t.signed:
        signed_record = lc.signed_record(record)
        assert signatures_on(signed_record, t.meaning, case.user) == before + 1, alerts(response)
    return response


@pytest.mark.parametrize(("name", "action", "source"), STEPS, ids=[f"{n}:{a}:{s}" for n, a, s in STEPS])
def test_every_declared_transition_works_through_its_page_as_a_browser_submits_it(app, world, name, action,
                                                                                   source):
    lc = LIFECYCLES[name]
    case = BUILDERS[name](world, action, source)
    assert lc.state_of(case.record) == source, f"the set-up left {name} in {lc.state_of(case.record)}"
    walk(app, lc, lc[action], source, case)


# --- the declarations -------------------------------------------------------------------------------------------------


def test_every_record_type_with_a_lifecycle_is_walked(app):
    assert set(BUILDERS) == set(LIFECYCLES), "add a builder for each lifecycle to BUILDERS"


def _reachable(lc: Lifecycle) -> set[str]:
    moves = [(t.source, t.next) for t in lc.transitions.values() if t.next != UNCHANGED]
    moves += [(s.source, s.next) for s in lc.system]
    seen, frontier = {lc.initial}, [lc.initial]
    while frontier:
        state = frontier.pop()
        for sources, target in moves:
            if state in sources and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_declarations_are_complete_and_consistent(app, name):
    lc = LIFECYCLES[name]
    states = set(lc.labels)
    assert lc.initial in states
    assert _reachable(lc) == states, f"{name}: states no transition reaches: {states - _reachable(lc)}"
    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    for t in lc.transitions.values():
        assert set(t.source) <= states and (t.next == UNCHANGED or t.next in states), t.action
        assert all(p in PERMISSIONS for p in t.permissions), t.action
        assert t.meaning is None or t.meaning in MEANINGS, t.action
        if t.meaning is not None and lc.signs_itself:
            assert t.meaning in lc.model.allowed_meanings, t.action
        assert t.task and t.label, f"{name}:{t.action} names itself in refusals and on its button"
        assert all(rule.name for rule in t.rules)
        endpoint = ceremony.endpoint_of(lc, t.action)
        assert endpoint in rules, f"{name}:{t.action} has no route {endpoint}"
        methods = rules[endpoint].methods - {"HEAD", "OPTIONS"}
        assert methods == ({"GET", "POST"} if t.own_page else {"POST"}), (t.action, methods)
        assert set(app.view_functions[endpoint].required_permissions) == set(t.permissions)


def test_docs_lifecycles_page_is_generated_from_the_declarations(app):
    page = ROOT / "docs" / "lifecycles.md"
    assert page.read_text(encoding="utf-8") == markdown(), \
        "docs/lifecycles.md is out of date: run flask signatures lifecycles --write docs/lifecycles.md"
    result = app.test_cli_runner().invoke(args=["signatures", "lifecycles", "--check", str(page)])
    assert result.exit_code == 0, result.output


def test_the_same_check_refuses_in_the_service_and_hides_the_button(app, world):
    """available() and the service's check agree: a person the rules refuse sees no button, and the step refuses
    them with the declared rule's reason."""
    from core.errors import NotPermitted
    from qms.change_control import services as cc
    from tests.integration.test_change_control_lifecycle import new_change, signed

    change = new_change(world.owner, owner_id=world.p.qa.id)
    signed(cc.submit, change, world.p.qa)
    assert "approve" not in [t.action for t in cc.LIFECYCLE.available(change, world.p.qa)]
    assert "approve" in [t.action for t in cc.LIFECYCLE.available(change, world.p.qa2)]
    with pytest.raises(NotPermitted, match="Segregation of duties"):
        signed(cc.approve, change, world.p.qa)
    page = text_of(client_for(app, world.p.qa).get(f"/change-control/{change.id}"))
    assert "Approve…" not in page
