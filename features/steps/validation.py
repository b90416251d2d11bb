"""Steps of the protocol runner's own qualification: the canary protocol executed through the runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core.db import db, transaction
from core.errors import InvalidTransition
from core.org import Department, Site
from features.support.documents import prove, run
from features.support.inspection import scalar_count
from qms.deviations.models import Deviation
from validation import services
from validation.models import FAILED, NOT_RUN, PASSED, UNDEFINED, StepResult, ValidationRun


@given(parsers.parse('a validation engineer "{engineer}" and a QA approver "{qa}" at site "{site}"'))
def engineer_and_qa(make_user, ctx, evidence, engineer, qa, site, tmp_path, monkeypatch):
    with transaction():
        place = Site(code=site, name=f"Site {site}")
        department = Department(site=place, code="VAL", name="Validation")
        db.session.add_all([place, department])
    ctx.engineer = make_user(engineer, roles={"validation_engineer"}, full_name="Vera Validation",
                             site_id=place.id, department_id=department.id)
    ctx.qa = make_user(qa, roles={"qa_approver"}, full_name="Quinn QA")
    # a copy of the shipped canaries, so that the scenario changing a file leaves the shipped one as it is
    folder = tmp_path / "canaries"
    shutil.copytree(services.protocol_dir("CANARY"), folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setitem(services.PROTOCOL_DIRS, "CANARY", str(folder))
    ctx.canaries = folder
    evidence.record("Executor", f"{ctx.engineer.full_name} ({engineer})")
    evidence.record("QA", f"{ctx.qa.full_name} ({qa})")


@given(parsers.parse('"{qa}" has approved the canary protocol'))
def canaries_approved(ctx, evidence, qa):
    paths = [f.path for f in services.protocol_files(["CANARY"])]
    versions = run(services.approve_files, paths, actor=ctx.qa, proof=prove(ctx.qa), reason=None)
    for version in versions:
        evidence.record("Approved protocol version", f"{Path(version.path).name} v{version.version} "
                                                      f"SHA-256 {version.sha256[:12]}…")


@when(parsers.parse('"{engineer}" executes the canary protocol'))
def execute_canaries(ctx, evidence, engineer):
    queued = run(services.create_run, "CANARY", executor=ctx.engineer)
    lines: list[str] = []
    ctx.run = services.execute(queued.id, echo=lines.append)
    ctx.summary = lines[-1]
    evidence.record("Validation run", ctx.run.id)
    evidence.record("Summary line", ctx.summary)


@then(parsers.parse("the run reports {scenarios:d} scenarios and {steps:d} steps: {passed:d} passed, {failed:d} "
                    "failed and {not_run:d} not run"))
def run_counts(ctx, evidence, scenarios, steps, passed, failed, not_run):
    r = ctx.run
    evidence.actual(f"{r.scenarios} scenarios, {r.steps} steps: {r.passed} passed, {r.failed} failed, "
                    f"{r.not_run} not run; result {r.result}")
    assert (r.scenarios, r.steps, r.passed, r.failed, r.not_run) == (scenarios, steps, passed, failed, not_run)
    assert r.result == FAILED
    assert ctx.summary == (f"protocol=CANARY run={r.id} scenarios={scenarios} steps={steps} passed={passed} "
                           f"failed={failed}")


def _steps(ctx) -> list[StepResult]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(StepResult).where(StepResult.run_id == ctx.run.id)
                                   .order_by(StepResult.id)))


@then(parsers.parse('the control scenario passed with its expected and actual result "{result}" and its start and '
                    'end times'))
def control_passed(ctx, evidence, result):
    control = next(s for s in ctx.run.scenario_results if s.name.startswith("Control"))
    last = [s for s in _steps(ctx) if s.scenario_id == control.id][-1]
    evidence.actual(f"{control.name}: {control.outcome}; last step expected {last.expected!r}, actual "
                    f"{last.actual!r}, {last.started_at:%H:%M:%S.%f} to {last.finished_at:%H:%M:%S.%f} UTC")
    assert control.outcome == PASSED and last.outcome == PASSED
    assert (last.expected, last.actual) == (result, result)
    assert last.started_at <= last.finished_at


@then("the wrong value, the undefined step and the exception are each reported as failed with their error")
def canaries_failed(ctx, evidence):
    failed = [s for s in _steps(ctx) if s.outcome in (FAILED, UNDEFINED)]
    evidence.actual("; ".join(f"{s.text}: {s.outcome} ({s.error.splitlines()[0]})" for s in failed))
    errors = " ".join(s.error for s in failed)
    assert len(failed) == 3 and {s.outcome for s in failed} == {FAILED, UNDEFINED}
    assert "expected 5, got 4" in errors and "no step definition" in errors and "RuntimeError" in errors
    canaries = [s for s in ctx.run.scenario_results if s.name.startswith("Canary")]
    assert [s.outcome for s in canaries] == [FAILED] * 3
    assert sum(1 for s in _steps(ctx) if s.outcome == NOT_RUN) == 2


@then("each failed step raised its own test incident naming the run, the step and the expected result")
def incidents(ctx, evidence):
    failed = [s for s in _steps(ctx) if s.outcome in (FAILED, UNDEFINED)]
    deviations = [db.session.get(Deviation, s.incident_id) for s in failed]
    evidence.actual(", ".join(f"{d.number} ({d.status})" for d in deviations))
    for step, deviation in zip(failed, deviations, strict=True):
        evidence.record("Test incident", f"{deviation.number}: step {step.position} {step.text}")
        assert deviation.status == "open" and deviation.owner_id == ctx.engineer.id
        assert f"Validation run {ctx.run.id}" in deviation.description
        assert step.text in deviation.description and f"Expected: {step.expected}" in deviation.description
    assert len({d.id for d in deviations}) == 3


@when("the canary protocol file is changed after its approval")
def change_canaries(ctx, evidence):
    feature = ctx.canaries / "canary.feature"
    feature.write_text(feature.read_text().replace("Then the result is 5", "Then the result is 4"))
    evidence.record("Changed file", feature.name)


@when("a step definition of the canary protocol is changed after its approval")
def change_canary_steps(ctx, evidence):
    steps = ctx.canaries / "test_canaries.py"
    steps.write_text(steps.read_text().replace("return number * 2", "return 4"))
    ctx.changed_steps = steps
    evidence.record("Changed file", steps.name)


def _refusal(ctx) -> str:
    try:
        run(services.create_run, "CANARY", executor=ctx.engineer)
    except InvalidTransition as exc:
        return exc.message
    return "no refusal"


@then(parsers.parse('"{engineer}" cannot start a run of the canary protocol, and the refusal names the changed file'))
def refused(ctx, evidence, engineer):
    message = _refusal(ctx)
    evidence.actual(message)
    assert "canary.feature (changed since its approved version)" in message


@then(parsers.parse('"{engineer}" cannot start a run of the canary protocol, and the refusal names the step code and '
                    'the changed file'))
def refused_step_code(ctx, evidence, engineer):
    message = _refusal(ctx)
    evidence.actual(message)
    assert (f"{services.step_code_path('CANARY')} (changed since its approved version: {ctx.changed_steps} changed)"
            in message)


@then("no run was recorded")
def no_run(evidence):
    count = scalar_count(ValidationRun)
    evidence.actual(f"{count} validation runs")
    assert count == 0
