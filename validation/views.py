"""Validation pages: the protocols and their approved versions, starting a run (executed in the background by
`flask validation execute`), the executed run with every step and its signatures, its PDF, and the traceability
matrix.

Everything here is readable by whoever holds audit.view (validation engineers, QA approvers, auditors and
administrators all do); starting a run needs validation.execute, approving protocols and reviewing or approving a run
validation.approve. The services enforce the same rules again (segregation of duties, states)."""

from __future__ import annotations

import difflib
import io
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core import audit
from core.audit.views import record_history
from core.auth.access import permission_required
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError
from core.forms import choices
from signatures import ceremony
from signatures import models as sig
from signatures import services as signing
from validation import services
from validation.forms import ApproveFilesForm, StartRunForm
from validation.models import (
    COMPLETED,
    EXECUTED,
    FAILED,
    NOT_RUN,
    PASSED,
    PROTOCOLS,
    QUEUED,
    REVIEWED,
    RUN_STATUS_LABELS,
    RUNNING,
    ProtocolVersion,
    ScenarioResult,
    StepResult,
    ValidationRun,
)

bp = Blueprint("validation", __name__, url_prefix="/validation", template_folder="templates")

READ = "audit.view"  # held by validation engineers, QA approvers, auditors and administrators
REFRESH_SECONDS = 3
STALLED_AFTER = timedelta(minutes=2)  # a queued run the background process has not picked up by then
# the signatures an executed run collects, in order, and the status each one needs
SIGNATURE_STEPS = ((sig.EXECUTED, "executor", COMPLETED), (sig.REVIEWED, "QA", EXECUTED),
                   (sig.APPROVED, "QA", REVIEWED))


def launch(run_id: int) -> subprocess.Popen:
    """Execute a queued run in a process of its own (`flask validation execute RUN_ID`), detached from the request:
    the run page follows its progress from the database. Its output goes to instance/validation-runs/run-N.log.
    Tests replace this function to execute synchronously."""
    logs = Path(current_app.instance_path) / "validation-runs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ATTEST_DATABASE_URL": current_app.config["SQLALCHEMY_DATABASE_URI"],
           "ATTEST_INSTANCE_PATH": current_app.instance_path,
           "ATTEST_VALIDATION_DATABASE_URL": current_app.config.get("ATTEST_VALIDATION_DATABASE_URL") or ""}
    command = [sys.executable, "-m", "flask", "--app", "app", "validation", "execute", str(run_id)]
    with (logs / f"run-{run_id}.log").open("ab") as log:
        return subprocess.Popen(command, cwd=current_app.instance_path, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _run(run_id: int) -> ValidationRun:
    run = db.session.get(ValidationRun, run_id)
    if run is None:
        abort(404, description=f"There is no validation run {run_id}.")
    return run


# --- overview and starting a run -------------------------------------------------------------------------------------


def _protocol_summary() -> list[dict]:
    files = services.protocol_files()
    out = []
    for code, title in PROTOCOLS.items():
        own = [f for f in files if f.protocol == code]
        states = Counter(f.state for f in own)
        step_code = next((f for f in own if f.kind == services.STEP_CODE_KIND), None)
        out.append({"code": code, "title": title, "files": sum(1 for f in own if f.kind == services.FEATURE_FILE),
                    "approved": states["approved"], "changed": states["changed"], "new": states["new"],
                    "folder": services.PROTOCOL_DIRS[code], "step_code": step_code})
    return out


def _overview(status: int = 200):
    wanted = request.args.get("status") or None
    stmt = sa.select(ValidationRun).order_by(ValidationRun.id.desc())
    if wanted in RUN_STATUS_LABELS:
        stmt = stmt.where(ValidationRun.status == wanted)
    runs = list(db.session.scalars(stmt.limit(500)))
    return render_template("validation/overview.html", protocols=_protocol_summary(), runs=runs, status=wanted,
                           STATUS_LABELS=RUN_STATUS_LABELS, start_form=StartRunForm(formdata=None),
                           title="Validation"), status


@bp.route("/")
@permission_required(READ)
def overview():
    return _overview()


@bp.route("/runs/start", methods=["POST"])
@permission_required("validation.execute")
def start_run():
    form = StartRunForm()
    if not form.validate_on_submit():
        for messages in form.errors.values():
            for message in messages:
                flash(message, "danger")
        return _overview(422)
    try:
        with transaction():
            run = services.create_run(form.protocol.data, executor=current_user)
    except AttestError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return _overview(exc.status)
    try:
        launch(run.id)
    except OSError as exc:
        flash(f"Run {run.id} is queued but could not be started in the background ({exc}). Ask the system "
              f"administrator to run `flask validation execute {run.id}` on the server.", "danger")
    else:
        flash(f"Run {run.id} of {run.protocol} started: this page follows its progress.", "success")
    return redirect(url_for("validation.run", run_id=run.id))


# --- protocol files --------------------------------------------------------------------------------------------------


@bp.route("/protocols")
@permission_required(READ)
def protocols():
    return render_template("validation/protocols.html", files=services.protocol_files(), PROTOCOLS=PROTOCOLS,
                           title="Validation protocols")


@bp.route("/protocols/view")
@permission_required(READ)
def protocol_file():
    """One feature file, or one protocol's step code, as it stands, its versions and their signatures; only the
    protocol entries, never any other path (the path is looked up among them, not opened as given)."""
    wanted = request.args.get("path") or ""
    if not wanted:
        return protocols()
    state = next((f for f in services.protocol_files() if f.path == wanted), None)
    if state is None:
        abort(404, description="That is not a protocol feature file or step code.")
    text = state.text
    versions = list(db.session.scalars(sa.select(ProtocolVersion).where(ProtocolVersion.path == state.path)
                                       .order_by(ProtocolVersion.version.desc())))
    diff = None
    if state.state == "changed":
        diff = "".join(difflib.unified_diff(state.approved.content.splitlines(keepends=True),
                                            text.splitlines(keepends=True),
                                            f"approved version {state.approved.version}", "current file"))
    sources = []
    if state.kind == services.STEP_CODE_KIND:  # each file's text, for QA to read before approving its manifest
        changed = {change.rsplit(" ", 1)[0] for change in state.changes}
        sources = [(path, text, path in changed) for path, text in services.step_code_sources(state.protocol)]
    return render_template("validation/protocol_file.html", state=state, text=text, diff=diff, sources=sources,
                           versions=[(v, _signature_lines(v)) for v in versions], title=state.path)


def _signature_lines(record) -> list[tuple[sig.Signature, str, str]]:
    return [(s, signing.manifestation(s), signing.status(s, record)) for s in signing.signatures_for(record)]


@bp.route("/protocols/approve", methods=["GET", "POST"])
@permission_required("validation.approve")
def approve_protocols():
    """The signing ceremony for protocol versions: one "Approved" signature per chosen file."""
    pending = [f for f in services.protocol_files() if f.state != "approved"]
    form = ApproveFilesForm()
    form.paths.choices = choices((f.path, f.path) for f in pending)
    form.meaning.choices = choices([(sig.APPROVED, sig.APPROVED)])
    if request.method == "GET":
        form.meaning.data = sig.APPROVED
        form.paths.data = [p for p in request.args.getlist("path") if p in {f.path for f in pending}]
    status = 200
    if form.validate_on_submit():
        changed = [f.path for f in pending if f.path in form.paths.data and f.state == "changed"]
        if changed and not (form.reason.data or "").strip():
            # refused before the password is checked: nothing to authenticate for
            form.reason.errors = [*form.reason.errors, f"Say why {', '.join(changed)} changed (reason for the "
                                                       f"new version)."]
            status = 422
        else:
            approved = []

            def act(user, proof):
                approved.extend(services.approve_files(form.paths.data, actor=user, proof=proof,
                                                       reason=form.reason.data, comment=form.comment.data))

            outcome = ceremony.perform(form, act)
            if outcome.response is not None:
                return outcome.response
            if outcome.ok:
                flash("Signed: Approved. " + "; ".join(f"{v.path} is now approved as version {v.version}"
                                                       for v in approved) + ".", "success")
                return redirect(url_for("validation.protocols"))
            status = outcome.status
    elif form.errors:
        status = 422
    return render_template("validation/approve_protocols.html", form=form, pending=pending, meaning=sig.APPROVED,
                           declaration=signing.DECLARATION, totp=current_user.security.totp_enrolled,
                           title="Approve protocol files"), status


# --- runs ------------------------------------------------------------------------------------------------------------


def _progress(run: ValidationRun) -> dict[str, int]:
    scenarios = db.session.scalar(sa.select(sa.func.count()).select_from(ScenarioResult)
                                  .where(ScenarioResult.run_id == run.id)) or 0
    outcomes = dict(db.session.execute(sa.select(StepResult.outcome, sa.func.count()).where(
        StepResult.run_id == run.id).group_by(StepResult.outcome)).all())
    return {"scenarios": scenarios, "steps": sum(outcomes.values()), "passed": outcomes.get(PASSED, 0),
            "failed": sum(n for o, n in outcomes.items() if o not in (PASSED, NOT_RUN))}


def _signature_slots(run: ValidationRun) -> list[tuple[str, str, list]]:
    """(meaning, who signs it, [(signature, manifestation, status)]) for Executed, Reviewed and Approved."""
    lines = _signature_lines(run)
    return [(meaning, who, [line for line in lines if line[0].meaning == meaning])
            for meaning, who, _status in SIGNATURE_STEPS]


@bp.route("/runs/<int:run_id>")
@permission_required(READ)
def run(run_id: int):
    record = _run(run_id)
    live = record.status in (QUEUED, RUNNING)
    stalled = record.status == QUEUED and now_utc() - record.created_at > STALLED_AFTER
    response = Response(render_template(
        "validation/run.html", run=record, live=live, stalled=stalled,
        progress=_progress(record) if live else None,
        fingerprint=record.fingerprint_data, slots=_signature_slots(record), history=record_history(
            ValidationRun, record.id), refresh=REFRESH_SECONDS, COMPLETED=COMPLETED, EXECUTED=EXECUTED,
        REVIEWED=REVIEWED, FAILED=FAILED, title=record.audit_title()))
    if live:
        response.headers["Refresh"] = str(REFRESH_SECONDS)
    return response


# the run's signed steps and abandoning it, from its lifecycle's declaration (validation.services.LIFECYCLE)
ceremony.expose(bp, services.LIFECYCLE, rule="/runs/<int:run_id>", load=_run, url_args=lambda run: {"run_id": run.id},
                back=lambda run: url_for("validation.run", run_id=run.id),
                panels={"executed": "validation/_sign_run.html", "review": "validation/_sign_run.html",
                        "approve": "validation/_sign_run.html"})


@bp.route("/runs/<int:run_id>.pdf")
@permission_required(READ)
def run_pdf(run_id: int):
    from validation.pdf import run_pdf as render

    record = _run(run_id)
    printed_at = now_utc()
    data = render(record, signatures=_signature_slots(record), printed_by=current_user.full_name,
                  printed_at=printed_at)
    with transaction():
        audit.record_event("validation_run.printed", run=record.id, protocol=record.protocol,
                           status=record.status, printed_at=printed_at.isoformat())
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f"inline; filename=validation-run-{record.id}-{record.protocol}.pdf"})


# --- traceability ----------------------------------------------------------------------------------------------------


@bp.route("/trace")
@permission_required(READ)
def trace():
    rows = services.trace_matrix()
    flagged_only = request.args.get("flagged") == "1"
    summary = Counter(row.status for row in rows)
    summary["flagged"] = sum(1 for row in rows if row.flag)
    shown = [row for row in rows if row.flag] if flagged_only else rows
    return render_template("validation/trace.html", rows=shown, total=len(rows), summary=summary,
                           flagged_only=flagged_only, title="Traceability matrix")


@bp.route("/trace.csv")
@permission_required(READ)
def trace_csv():
    out = io.StringIO()
    services.write_trace_csv(services.trace_matrix(), out)
    stamp = now_utc().strftime("%Y%m%d-%H%M%S")
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=trace-matrix-{stamp}Z.csv"})
