"""The protocol runner on a real database: only approved feature files run; every scenario and step is stored with
its evidence; failures (wrong value, undefined step, exception) are reported as failed and raise test incidents;
the fingerprint records what ran; the executed run is signed Executed, Reviewed and Approved; the trace matrix links
requirements to their latest results."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import db, transaction
from core.errors import InvalidTransition, NotPermitted, ValidationError
from core.org import Department, Site
from features.support.documents import prove, run
from qms.deviations.models import Deviation
from signatures.models import Signature
from testkit.plugin import is_postgres
from validation import services
from validation.bdd import load_urs
from validation.models import (
    COMPLETED,
    EXECUTED,
    FAILED,
    NOT_RUN,
    PASSED,
    PROTOCOLS,
    QUEUED,
    REVIEWED,
    RUN_APPROVED,
    UNDEFINED,
    ProtocolVersion,
    StepResult,
    ValidationRun,
)

CANARIES = services.protocol_dir("CANARY")


@pytest.fixture
def app_config():
    import os

    # on the PostgreSQL pass the runs create their scratch database on the same server
    return {"VALIDATION_DATABASE_URL": os.environ.get("ATTEST_TEST_DATABASE_URL", "") if is_postgres() else ""}


@pytest.fixture
def people(make_user):
    with transaction():
        site = Site(code="BSL", name="Basel")
        department = Department(site=site, code="ENG", name="Engineering")
        db.session.add_all([site, department])
    vera = make_user("vera.val", roles={"validation_engineer"}, full_name="Vera Validation",
                     site_id=site.id, department_id=department.id)
    quinn = make_user("quinn.qa", roles={"qa_approver"}, full_name="Quinn QA")
    rita = make_user("rita.qa", roles={"qa_approver"}, full_name="Rita Reviewer")
    return vera, quinn, rita


@pytest.fixture
def canaries(tmp_path, monkeypatch):
    """A copy of the canary protocol that a test may change (the shipped files stay as they are)."""
    folder = tmp_path / "canaries"
    shutil.copytree(CANARIES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setitem(services.PROTOCOL_DIRS, "CANARY", str(folder))
    return folder


def approve(user, protocol: str, reason: str | None = None) -> list[ProtocolVersion]:
    paths = [f.path for f in services.protocol_files([protocol]) if f.state != "approved"]
    return run(services.approve_files, paths, actor=user, proof=prove(user), reason=reason)


def execute(protocol: str, executor, echo=None) -> ValidationRun:
    queued = run(services.create_run, protocol, executor=executor)
    assert queued.status == QUEUED
    return services.execute(queued.id, echo=echo)


def steps_of(result: ValidationRun) -> list[StepResult]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(StepResult).where(StepResult.run_id == result.id)
                                   .order_by(StepResult.scenario_id, StepResult.position)))


def test_a_run_stores_every_step_reports_each_canary_as_failed_and_raises_test_incidents(app, people, canaries):
    vera, quinn, _ = people
    lines: list[str] = []
    approve(quinn, "CANARY")
    result = execute("CANARY", vera, echo=lines.append)

    assert lines[-1] == f"protocol=CANARY run={result.id} scenarios=4 steps=12 passed=7 failed=3"
    assert (result.status, result.result) == (COMPLETED, FAILED)
    assert (result.scenarios, result.steps, result.passed, result.failed, result.not_run) == (4, 12, 7, 3, 2)
    outcomes = {s.name: s.outcome for s in result.scenario_results}
    assert outcomes == {"Control: a correct expected value passes": PASSED,
                        "Canary: a wrong expected value is reported as failed": FAILED,
                        "Canary: an undefined step is reported as failed": FAILED,
                        "Canary: an unexpected exception is reported as failed": FAILED}
    rows = {(s.scenario_id, s.position): s for s in steps_of(result)}
    by_name = {s.name: s.id for s in result.scenario_results}
    control = rows[(by_name["Control: a correct expected value passes"], 3)]
    assert (control.text, control.expected, control.actual, control.outcome) == (
        "the result is 4", "the result is 4", "the result is 4", PASSED)
    given = rows[(by_name["Control: a correct expected value passes"], 1)]
    assert given.expected == services.PERFORMED and given.evidence_items == [("number", "2")]
    assert given.started_at is not None and given.finished_at >= given.started_at

    wrong = rows[(by_name["Canary: a wrong expected value is reported as failed"], 3)]
    assert (wrong.expected, wrong.actual, wrong.outcome) == ("the result is 5", "the result is 4", FAILED)
    assert "expected 5, got 4" in wrong.error
    undefined = rows[(by_name["Canary: an undefined step is reported as failed"], 2)]
    assert undefined.outcome == UNDEFINED and "no step definition" in undefined.error
    after = rows[(by_name["Canary: an undefined step is reported as failed"], 3)]
    assert after.outcome == NOT_RUN and "Not executed" in after.error
    boom = rows[(by_name["Canary: an unexpected exception is reported as failed"], 2)]
    assert boom.outcome == FAILED and "RuntimeError: canary: unexpected error" in boom.error

    # each failed step raised its own test incident: a deviation owned by the executor naming the run and step
    failed = [s for s in rows.values() if s.outcome in (FAILED, UNDEFINED)]
    incidents = db.session.scalars(sa.select(Deviation).order_by(Deviation.id)).all()
    assert sorted(s.incident_id for s in failed) == [d.id for d in incidents] and len(incidents) == 3
    incident = db.session.get(Deviation, wrong.incident_id)
    assert incident.status == "open" and incident.owner_id == vera.id
    assert f"Validation run {result.id} (CANARY)" == incident.area
    assert "Expected: the result is 5" in incident.description and "Actual: the result is 4" in incident.description
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_only_approved_feature_files_run_and_a_changed_file_needs_its_new_version_approved(app, people, canaries):
    vera, quinn, _ = people
    with pytest.raises(InvalidTransition, match=r"canary.feature \(not yet approved\)"):
        run(services.create_run, "CANARY", executor=vera)
    with pytest.raises(NotPermitted, match="validation.approve"):
        approve(vera, "CANARY")
    step_code, first = approve(quinn, "CANARY")  # in the order of their paths: "canaries (step code)" first
    assert (first.version, first.status) == (1, "approved")
    assert step_code.path == services.step_code_path("CANARY")
    assert {path.rsplit("/", 1)[-1] for path in services.parse_manifest(step_code.content)} == {
        "__init__.py", "conftest.py", "test_canaries.py", "bdd.py", "capture.py"}
    assert first.content == (canaries / "canary.feature").read_text()
    signatures = db.session.scalars(sa.select(Signature).where(Signature.record_type == "val_protocol_version")).all()
    assert [(s.meaning, s.signer_id, s.record_id) for s in signatures] == [("Approved", quinn.id, step_code.id),
                                                                          ("Approved", quinn.id, first.id)]

    before = execute("CANARY", vera)
    feature = canaries / "canary.feature"
    feature.write_text(feature.read_text().replace("Then the result is 5", "Then the result is 6"))
    with pytest.raises(InvalidTransition, match="changed since its approved version"):
        run(services.create_run, "CANARY", executor=vera)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ValidationRun)) == 1  # nothing written
    with pytest.raises(ValidationError, match="Say why"):
        approve(quinn, "CANARY")
    [second] = approve(quinn, "CANARY", reason="Canary expects 6")
    db.session.refresh(first)
    assert (second.version, first.status) == (2, "superseded")

    after = execute("CANARY", vera)
    path = first.path
    assert before.fingerprint_data["files"][path] == first.sha256
    assert after.fingerprint_data["files"][path] == second.sha256 != first.sha256
    assert before.fingerprint_sha256 != after.fingerprint_sha256
    assert {f.protocol_version_id for f in after.files} == {second.id, step_code.id}


def test_fingerprint_names_the_application_python_packages_database_and_os(app, people, canaries, monkeypatch):
    vera, quinn, _ = people
    step_code = next(v for v in approve(quinn, "CANARY") if v.path.endswith(services.STEP_CODE_SUFFIX))
    monkeypatch.delenv("ATTEST_BUILD_COMMIT", raising=False)
    data = execute("CANARY", vera).fingerprint_data
    assert data["application"]["name"] == "attest" and data["application"]["version"]
    assert data["application"]["commit"] is None, "no git: only a commit the build states"
    assert data["application"]["installed_at"] == str(services.package_dir("validation").parent)
    # the approved step code: its SHA-256 among the files executed, and each of its files with its own SHA-256
    assert data["files"][step_code.path] == step_code.sha256 == hashlib.sha256(step_code.content.encode()).hexdigest()
    files = data["step_code"][step_code.path]["files"]
    assert files == services.parse_manifest(step_code.content)
    assert files["validation/capture.py"] == services.sha256_of(services.package_dir("validation") / "capture.py")
    assert files[str(canaries / "test_canaries.py")] == services.sha256_of(canaries / "test_canaries.py")
    monkeypatch.setenv("ATTEST_BUILD_COMMIT", "0123abc")
    assert execute("CANARY", vera).fingerprint_data["application"]["commit"] == "0123abc"
    assert data["python"]["version"].count(".") == 2
    assert "pytest-bdd" in data["packages"] and "sqlalchemy" in data["packages"]
    expected = "postgresql" if is_postgres() else "sqlite"
    assert data["database"]["scratch"].startswith(expected)
    assert data["os"]["platform"]


def test_a_changed_step_code_file_stops_the_protocol_until_qa_approves_the_new_step_code(app, people, canaries):
    vera, quinn, _ = people
    step_code, feature = approve(quinn, "CANARY")
    queued = run(services.create_run, "CANARY", executor=vera)
    steps = canaries / "test_canaries.py"
    steps.write_text(steps.read_text().replace("return number * 2", "return 4"))
    # the queued run no longer starts, and no new run is accepted: the refusal names the step code and the file
    with pytest.raises(InvalidTransition, match="changed since"):
        services.execute(queued.id)
    with pytest.raises(InvalidTransition) as refused:
        run(services.create_run, "CANARY", executor=vera)
    assert f"{step_code.path} (changed since its approved version: {steps} changed)" in refused.value.message
    assert "canary.feature" not in refused.value.message, "the feature file itself is unchanged"
    (canaries / "helpers.py").write_text("HELPER = 1\n")
    with pytest.raises(InvalidTransition, match=f"{canaries / 'helpers.py'} added"):
        services.check_executable("CANARY")

    with pytest.raises(ValidationError, match=r"Say why .*\(step code\) changed"):
        approve(quinn, "CANARY")
    [second] = approve(quinn, "CANARY", reason="Doubling step simplified; helper module added")
    db.session.refresh(step_code)
    assert (second.path, second.version, step_code.status) == (step_code.path, 2, "superseded")
    assert services.manifest_changes(step_code.content, second.content) == [
        f"{canaries / 'helpers.py'} added", f"{steps} changed"]
    assert [f.state for f in services.check_executable("CANARY")] == ["approved", "approved"]
    result = execute("CANARY", vera)
    assert result.fingerprint_data["files"][second.path] == second.sha256 != step_code.sha256
    assert {f.protocol_version_id for f in result.files} == {feature.id, second.id}


@pytest.fixture
def features_copy(tmp_path, monkeypatch):
    """A copy of the installed features package that a test may edit: the protocols and their step code are found
    through it (services.package_dir), as they would be in another installation."""
    copy = tmp_path / "site" / "features"
    shutil.copytree(services.package_dir("features"), copy, ignore=shutil.ignore_patterns("__pycache__"))
    real = services.package_dir
    monkeypatch.setattr(services, "package_dir", lambda package: copy if package == "features" else real(package))
    return copy


def test_editing_a_shared_step_helper_makes_every_protocol_using_it_wait_for_qa(app, people, features_copy):
    vera, quinn, _ = people
    approved = {v.path: v for v in approve(quinn, "IQ") + approve(quinn, "OQ")}
    assert "features/iq (step code)" in approved and "features/oq (step code)" in approved
    iq = services.parse_manifest(approved["features/iq (step code)"].content)
    assert {"features/conftest.py", "features/support/documents.py", "features/support/inspection.py",
            "features/steps/installation.py", "features/iq/test_iq.py", "validation/bdd.py", "validation/capture.py",
            "testkit/plugin.py"} <= set(iq)
    assert not any(path.startswith(("features/oq/", "features/pq/")) for path in iq), "other protocols' own code"
    services.check_executable("IQ")

    helper = features_copy / "support" / "inspection.py"
    helper.write_text(helper.read_text().replace('TAG_RE = re.compile(r"<[^>]+>")', 'TAG_RE = re.compile(r"<b>")'))
    for protocol in ("IQ", "OQ"):
        with pytest.raises(InvalidTransition) as refused:
            services.check_executable(protocol)
        assert (f"features/{protocol.lower()} (step code) (changed since its approved version: "
                f"features/support/inspection.py changed)") in refused.value.message
    # an edit to one protocol's own module concerns that protocol only
    (features_copy / "iq" / "test_iq.py").write_text("from pytest_bdd import scenarios\n\nscenarios('.')\n")
    [iq_files] = [f for f in services.protocol_files(["IQ"]) if f.kind == services.STEP_CODE_KIND]
    assert iq_files.changes == ["features/iq/test_iq.py changed", "features/support/inspection.py changed"]
    [oq_files] = [f for f in services.protocol_files(["OQ"]) if f.kind == services.STEP_CODE_KIND]
    assert oq_files.changes == ["features/support/inspection.py changed"]

    approve(quinn, "IQ", reason="Tag pattern of the page reader changed")
    services.check_executable("IQ")
    with pytest.raises(InvalidTransition, match="features/support/inspection.py changed"):
        services.check_executable("OQ")


def test_the_declared_step_code_holds_every_harness_module_the_protocols_import():
    """STEP_CODE names the fixtures and helpers outside features/ by hand: every module of the test harness that a
    protocol's files import (at any depth, also inside functions, and through pytest_plugins) must be in it."""
    import ast
    import importlib.util

    harness = ("core.testing", "features", "validation.bdd", "validation.capture", "validation.canaries")

    def imported(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytest_plugins"
                                                      for t in node.targets):
                names.update(e.value for e in node.value.elts if isinstance(e, ast.Constant))
        return names

    def origin(name: str) -> Path | None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        return Path(spec.origin).resolve() if spec and spec.origin and spec.origin.endswith(".py") else None

    for protocol in PROTOCOLS:
        declared = set(services.step_code_files(protocol))
        todo, seen, missing = list(declared), set(), []
        while todo:
            for name in imported(todo.pop()):
                found = origin(name)
                if found is None or found in seen or not name.startswith(harness):
                    continue
                seen.add(found)
                todo.append(found)
                if found not in declared:
                    missing.append(f"{name} ({found})")
        assert missing == [], f"{protocol}: harness modules outside its declared step code: {missing}"


def test_the_executed_run_is_signed_executed_reviewed_and_approved_with_segregation(app, people, canaries):
    vera, quinn, rita = people
    approve(quinn, "CANARY")
    result = execute("CANARY", vera)
    with pytest.raises(NotPermitted, match="validation.execute"):
        run(services.sign_executed, result, actor=rita, proof=prove(rita), expected_row_version=result.row_version)
    with pytest.raises(InvalidTransition, match="needs it executed"):
        run(services.review, result, actor=rita, proof=prove(rita), expected_row_version=result.row_version)
    run(services.sign_executed, result, actor=vera, proof=prove(vera), expected_row_version=result.row_version)
    assert result.status == EXECUTED
    with pytest.raises(NotPermitted, match="validation.approve"):
        run(services.review, result, actor=vera, proof=prove(vera), expected_row_version=result.row_version)
    run(services.review, result, actor=rita, proof=prove(rita), expected_row_version=result.row_version,
        comment="Evidence checked against each step.")
    assert result.status == REVIEWED
    with pytest.raises(ValidationError, match="failed steps: approving it needs a comment"):
        run(services.approve, result, actor=quinn, proof=prove(quinn), expected_row_version=result.row_version)
    run(services.approve, result, actor=quinn, proof=prove(quinn), expected_row_version=result.row_version,
        comment="Canaries failed as designed: the runner reports failures.")
    assert result.status == RUN_APPROVED
    signatures = db.session.scalars(sa.select(Signature).where(Signature.record_type == "val_run")
                                    .order_by(Signature.id)).all()
    assert [(s.meaning, s.signer_id) for s in signatures] == [("Executed", vera.id), ("Reviewed", rita.id),
                                                            ("Approved", quinn.id)]
    # each signature binds the results: changing one step afterwards changes the signed content
    content = result.canonical_content()
    assert json.loads(content)["results_sha256"] == result.results_sha256()
    with transaction(reason="test: out-of-band change"):
        db.session.execute(sa.text("UPDATE val_step_result SET outcome = 'passed' WHERE run_id = :r AND "
                                   "outcome = 'failed'"), {"r": result.id})
    db.session.expire_all()
    assert result.canonical_content() != content


def test_cli_runs_a_protocol_prints_the_summary_line_and_exits_non_zero_on_failure(app, people, canaries):
    vera, quinn, _ = people
    refused = app.test_cli_runner().invoke(args=["validation", "run", "CANARY", "--executor", "vera.val"])
    assert refused.exit_code != 0 and "not yet approved" in refused.output
    approve(quinn, "CANARY")
    result = app.test_cli_runner().invoke(args=["validation", "run", "canary", "--executor", "vera.val"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    run_id = db.session.scalar(sa.select(sa.func.max(ValidationRun.id)))
    assert last == f"protocol=CANARY run={run_id} scenarios=4 steps=12 passed=7 failed=3"
    unknown = app.test_cli_runner().invoke(args=["validation", "run", "OQ", "--executor", "nobody"])
    assert unknown.exit_code != 0 and "no user 'nobody'" in unknown.output


def _oq_folder(tmp_path: Path, requirement_ok: str, requirement_failing: str) -> Path:
    """A tiny OQ protocol using the canary steps: one scenario passes, one fails."""
    folder = tmp_path / "oq"
    folder.mkdir()
    shutil.copy(CANARIES / "conftest.py", folder / "conftest.py")
    shutil.copy(CANARIES / "test_canaries.py", folder / "test_oq_small.py")
    (folder / "small.feature").write_text(f"""Feature: Arithmetic the system relies on

  @{requirement_ok}
  Scenario: Doubling works
    Given the number 3
    When it is doubled
    Then the result is 6

  @{requirement_failing}
  Scenario: Doubling is misjudged
    Given the number 3
    When it is doubled
    Then the result is 7
""")
    return folder


def test_trace_matrix_links_requirements_to_scenarios_and_latest_results_and_flags_gaps(app, people, tmp_path,
                                                                                         monkeypatch):
    vera, quinn, _ = people
    requirements = [r["id"] for r in load_urs()]
    ok, failing = requirements[0], requirements[1]
    monkeypatch.setitem(services.PROTOCOL_DIRS, "OQ", str(_oq_folder(tmp_path, ok, failing)))
    monkeypatch.setitem(services.PROTOCOL_DIRS, "IQ", str(tmp_path / "none"))
    monkeypatch.setitem(services.PROTOCOL_DIRS, "PQ", str(tmp_path / "none"))
    rows = {r.requirement["id"]: r for r in services.trace_matrix()}
    assert set(rows) == set(requirements)
    assert rows[ok].flag == "Not yet executed" and [s.name for s in rows[ok].scenarios] == ["Doubling works"]
    assert rows[requirements[2]].flag == "No scenario verifies this requirement"

    approve(quinn, "OQ")
    result = execute("OQ", vera)
    rows = {r.requirement["id"]: r for r in services.trace_matrix()}
    assert rows[ok].flag is None and rows[ok].status == "passed"
    assert rows[ok].scenarios[0].latest_run.id == result.id
    assert rows[failing].flag == "Latest result failed"
    table = services.trace_table(rows.values())
    assert [ok, "Doubling works", "passed", str(result.id)] == [table[0][0], table[0][7], table[0][8], table[0][9]]
    import io

    out = io.StringIO()
    services.write_trace_csv(services.trace_matrix(), out)
    assert out.getvalue().splitlines()[0] == ",".join(services.TRACE_COLUMNS)


def test_the_installation_qualification_runs_in_the_runner_against_the_installation(app, people):
    """The real IQ protocol, executed as a validation engineer would: every scenario passes on this installation."""
    vera, quinn, _ = people
    approve(quinn, "IQ")
    result = execute("IQ", vera)
    failures = [(s.text, s.error) for s in steps_of(result) if s.outcome != PASSED]
    assert (result.result, failures) == (PASSED, []), (result.error, failures)
    assert result.scenarios >= 4 and result.steps == result.passed
    assert all(s.requirement_ids for s in result.scenario_results)


def test_a_queued_run_whose_files_changed_before_it_started_ends_as_a_runner_error(app, people, canaries):
    vera, quinn, _ = people
    approve(quinn, "CANARY")
    queued = run(services.create_run, "CANARY", executor=vera)
    feature = canaries / "canary.feature"
    feature.write_text(feature.read_text() + "\n")
    with pytest.raises(InvalidTransition, match="changed since its approved version"):
        services.execute(queued.id)
    db.session.expire_all()
    assert (queued.status, queued.result) == ("error", FAILED) and "changed since" in queued.error
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StepResult)) == 0


def _refused_to_start(app, people, scratch_url: str) -> ValidationRun:
    vera, quinn, _ = people
    approve(quinn, "CANARY")
    queued = run(services.create_run, "CANARY", executor=vera)
    app.config["ATTEST_VALIDATION_DATABASE_URL"] = scratch_url
    with pytest.raises(ValidationError) as refusal:
        services.execute(queued.id)
    db.session.expire_all()
    assert (queued.status, queued.result, queued.error) == ("error", FAILED, refusal.value.message)
    assert queued.started_at is None and queued.fingerprint is None, "nothing ran"
    return queued


def test_a_scratch_database_that_is_not_a_postgresql_server_is_refused_before_anything_runs(app, people, canaries,
                                                                                              tmp_path):
    queued = _refused_to_start(app, people, f"sqlite:///{tmp_path / 'scratch.db'}")
    assert "must name a PostgreSQL server" in queued.error


@pytest.mark.postgres_only
def test_the_production_database_is_refused_as_the_scratch_database(app, people, canaries):
    queued = _refused_to_start(app, people, app.config["SQLALCHEMY_DATABASE_URI"])
    assert queued.error == "The scratch database server URL must not be the production database."


def test_a_run_whose_process_is_gone_is_abandoned_with_a_reason(app, people, canaries):
    vera, quinn, rita = people
    approve(quinn, "CANARY")
    queued = run(services.create_run, "CANARY", executor=vera)
    with pytest.raises(ValidationError, match="Say why"):
        run(services.abandon, queued, actor=vera, reason=" ")
    result = app.test_cli_runner().invoke(args=["validation", "abandon", str(queued.id), "--reason",
                                                "Server restarted during the run"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert (queued.status, queued.result) == ("error", FAILED)
    assert queued.error == "Abandoned by the command line: Server restarted during the run"
    with pytest.raises(InvalidTransition, match="only a queued or running run"):
        run(services.abandon, queued, actor=rita, reason="Again")
    with pytest.raises(InvalidTransition, match="only a queued run is executed"):
        services.execute(queued.id)
