"""Real records behind the parametrised URLs, and the routes built from them, for the access-control sweeps
(tests/web/test_authorization_matrix.py, tests/web/test_fuzz_forms.py through test_permissions)."""

from __future__ import annotations

from typing import Any

from core.db import db

UNCHECKED_ENDPOINTS = {"static", "bootstrap.static"}


def _tiny_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Example PDF procedure")
    return bytes(pdf.output())


def _example_ids(app, users, viewer=None) -> dict[str, int]:
    """Real records for parametrised pages: a user, a document with a Markdown revision and a PDF draft, and a
    training assignment on the effective revision for each user (created once per test's database). Assignments
    are visible only to their assignee, so `assignment_id` is the viewer's own (the operator's by default)."""
    if "test_examples" not in app.extensions:
        from core.db import transaction
        from core.org import Department, JobFunction, Site
        from qms.documents import publish
        from qms.documents.models import Document, Revision
        from training.models import TrainingAssignment

        author = users["document_author"]
        with transaction(reason="Example records for the permission sweep"):
            site = Site(code="EX", name="Example site")
            dept = Department(site=site, code="EXD", name="Example department")
            doc = Document(number="SOP-EX-001", title="Example procedure", doc_type="SOP", department=dept,
                           owner_id=author.id)
            function = JobFunction(code="EX-OPR", name="Example operator", department=dept)
            db.session.add_all([site, dept, doc, function])
            # the example person reports to the supervisor: supervisors see their direct reports' training
            users["operator"].supervisor_id = users["supervisor"].id
            db.session.flush()
            first = Revision(document_id=doc.id, major=1, minor=0, status="effective", content_format="markdown",
                             content_markdown="# Example", change_summary="First issue", reason="New",
                             author_id=author.id, content_sha256="0" * 64)
            draft = Revision(document_id=doc.id, major=2, minor=0, status="draft", content_format="pdf",
                             content_pdf=_tiny_pdf(), content_filename="example.pdf",
                             change_summary="PDF version", reason="Layout", author_id=author.id,
                             content_sha256="0" * 64)
            db.session.add_all([first, draft])
            db.session.flush()
            subject = publish.register(doc)
            item = publish.as_item(first)
            assignments = {u.id: TrainingAssignment(user_id=u.id, subject_id=subject.id, item_id=item.id,
                                                    source_type="revision_approval", source_id=first.id)
                           for u in users.values()}
            db.session.add_all(assignments.values())
            db.session.flush()
            from qms.change_control.models import ChangeControl

            change = ChangeControl(number="CC-2000-0001", title="Example change", description="Example",
                                   justification="Example", change_type="document", risk_level="low",
                                   risk_rationale="Example", owner_id=users["qa_approver"].id)
            db.session.add(change)
            from datetime import UTC, date, datetime

            from qms.capa.models import Capa, CapaAction
            from qms.deviations.models import Deviation

            deviation = Deviation(number="DEV-2000-0001", title="Example deviation",
                                  occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
                                  discovered_at=datetime(2000, 1, 2, tzinfo=UTC), site_id=site.id,
                                  department_id=dept.id, description="Example", owner_id=users["qa_approver"].id)
            capa = Capa(number="CAPA-2000-0001", title="Example CAPA", source_type="other",
                        source_reference="Example", problem_statement="Example", owner_id=users["qa_approver"].id)
            db.session.add_all([deviation, capa])
            db.session.flush()
            capa_action = CapaAction(capa_id=capa.id, kind="corrective", description="Example action",
                                     owner_id=users["qa_approver"].id, due_on=date(2030, 1, 1))
            db.session.add(capa_action)
            from validation.models import ScenarioResult, StepResult, ValidationRun

            run = ValidationRun(protocol="CANARY", status="completed", result="failed", scenarios=1, steps=1,
                                failed=1, executor_id=users["validation_engineer"].id)
            db.session.add(run)
            db.session.flush()
            scenario = ScenarioResult(run_id=run.id, position=1, feature_path="validation/canaries/canary.feature",
                                      feature_name="Example", name="Example scenario", tags="URS-001",
                                      outcome="failed")
            db.session.add(scenario)
            db.session.flush()
            db.session.add(StepResult(run_id=run.id, scenario_id=scenario.id, position=1, keyword="Then",
                                      text="the result is 5", expected="the result is 5", actual="the result is 4",
                                      outcome="failed", incident_id=deviation.id))
            db.session.flush()
            app.extensions["test_examples"] = {"user_id": users["operator"].id, "document_id": doc.id,
                                               "subject_id": subject.id,
                                               "revision_id": draft.id, "job_function_id": function.id,
                                               "username": users["operator"].username, "change_id": change.id,
                                               "deviation_id": deviation.id, "capa_id": capa.id,
                                               "action_id": capa_action.id, "run_id": run.id}
            app.extensions["test_example_assignments"] = {uid: a.id for uid, a in assignments.items()}
    own = app.extensions["test_example_assignments"]
    viewer_id = (viewer or users["operator"]).id
    return {**app.extensions["test_examples"], "assignment_id": own.get(viewer_id, own[users["operator"].id])}


def post_example_ids(app, users, viewer=None) -> dict[str, Any]:
    """`_example_ids` and the records only POST routes name: a task of the example change control (owned by the QA
    approver), a job function the example person holds, and a personal API token of each user. Tokens are private
    to their owner (another's answers 404), so `token_id` is the viewer's own."""
    example = _example_ids(app, users, viewer)
    if "test_post_examples" not in app.extensions:
        from datetime import date

        from core.auth import tokens
        from core.db import transaction
        from qms.change_control.models import ChangeTask
        from training.models import UserJobFunction

        with transaction(reason="Example records for the POST routes of the permission sweep"):
            task = ChangeTask(change_id=example["change_id"], title="Example task", owner_id=users["qa_approver"].id,
                              due_on=date(2030, 1, 1))
            held = UserJobFunction(user_id=example["user_id"], job_function_id=example["job_function_id"],
                                   valid_from=date(2020, 1, 1))
            db.session.add_all([task, held])
            created = {u.id: tokens.create(u, name="Example token") for u in users.values()}
            db.session.flush()
            app.extensions["test_post_examples"] = {"task_id": task.id, "held_id": held.id}
            app.extensions["test_example_tokens"] = {uid: (t.id, secret) for uid, (t, secret) in created.items()}
    token_id, _secret = app.extensions["test_example_tokens"][(viewer or users["operator"]).id]
    return {**example, **app.extensions["test_post_examples"], "token_id": token_id}


def api_token_secret(app, user) -> str:
    """The secret of `user`'s example API token (post_example_ids must have run)."""
    return app.extensions["test_example_tokens"][user.id][1]


def routes(app, example: dict[str, Any], method: str = "GET") -> list[tuple[str, str, str]]:
    """(endpoint, path, required permission) of every route accepting `method`, its URL built from `example`."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNCHECKED_ENDPOINTS or method not in rule.methods:
            continue
        if set(rule.arguments) - example.keys():
            raise AssertionError(f"no example value for the URL parameters of {rule.rule}; add one to "
                                 f"tests/web/route_examples.py")
        path = rule.build({k: v for k, v in example.items() if k in rule.arguments}, append_unknown=False)[1]
        found.append((rule.endpoint, path, app.view_functions[rule.endpoint].required_permission))
    return sorted(found)


def get_routes(app, users, viewer=None) -> list[tuple[str, str, str]]:
    """(endpoint, path, required permission) for every GET page; parametrised pages use real records (the
    viewer's own where a record is private to its owner)."""
    return routes(app, _example_ids(app, users, viewer))
