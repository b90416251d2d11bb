"""Change control pages: the register (search, filters), the record with its chain change -> revisions ->
assignments and live training progress, the forms; the lifecycle's steps (signed and unsigned) are exposed from its
declaration by the shared signing view (`signatures.ceremony.expose`)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core.audit.views import record_history
from core.auth.access import permission_required
from core.auth.models import User, UserRole
from core.auth.permissions import ROLES
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices, show_error
from core.org import JobFunction
from qms.change_control import services
from qms.change_control.forms import ChangeForm, ScopeForm, TaskForm, TaskStatusForm
from qms.change_control.models import (
    CHANGE_TYPES,
    RISK_LEVELS,
    STATUS_LABELS,
    TASK_STATUS_LABELS,
    ChangeControl,
    ChangeTask,
)
from qms.documents.models import Document
from signatures import ceremony
from signatures import services as signing

bp = Blueprint("change_control", __name__, url_prefix="/change-control", template_folder="../templates")

@bp.route("/")
@permission_required("quality.view")
def register():
    status = request.args.get("status") or None
    query = (request.args.get("q") or "").strip()[:100]
    overdue = request.args.get("overdue") == "1"
    stmt = sa.select(ChangeControl).order_by(ChangeControl.id.desc())
    if overdue:
        stmt = stmt.where(ChangeControl.id.in_(services.overdue_changes()))
    if status in STATUS_LABELS:
        stmt = stmt.where(ChangeControl.status == status)
    if query:
        like = f"%{query}%"
        stmt = stmt.where(sa.or_(ChangeControl.number.ilike(like), ChangeControl.title.ilike(like)))
    records = list(db.session.scalars(stmt.limit(500)))
    return render_template("qms/change_control/register.html", records=records, status=status, query=query,
                           overdue=overdue, STATUS_LABELS=STATUS_LABELS, title="Change control")


def _change(change_id: int) -> ChangeControl:
    change = db.session.get(ChangeControl, change_id)
    if change is None:
        abort(404, description=f"There is no change control with id {change_id}.")
    return change


def _users_with(permission: str | None) -> list[User]:
    stmt = sa.select(User).where(User.active.is_(True)).order_by(User.full_name)
    if permission:
        roles = [code for code, role in ROLES.items() if permission in role.permissions]
        stmt = stmt.where(User.id.in_(sa.select(UserRole.user_id).where(UserRole.role.in_(roles))))
    return list(db.session.scalars(stmt))


def _scope_choices(form) -> None:
    form.documents.choices = choices((d.id, f"{d.number} — {d.title}")
                                     for d in db.session.scalars(sa.select(Document).order_by(Document.number)))
    form.job_functions.choices = choices(
        (j.id, f"{j.code} — {j.name}")
        for j in db.session.scalars(sa.select(JobFunction).where(JobFunction.active.is_(True))
                                    .order_by(JobFunction.code)))


def _values(form) -> dict:
    return {"title": form.title.data, "description": form.description.data,
            "justification": form.justification.data, "change_type": form.change_type.data,
            "risk_level": form.risk_level.data, "risk_rationale": form.risk_rationale.data,
            "owner_id": form.owner_id.data}


def _save(form, work, *, reason: str | None = None) -> int | None:
    """Run a validated form's service call in one unit of work: None when saved, else the status of the page that
    shows the refusal (a field error under its field, any other refusal as a message)."""
    try:
        with transaction(reason=reason):
            work()
    except ValidationError as exc:
        show_error(form, exc)
        return 422
    except AttestError as exc:
        flash(exc.message, "danger")
        return exc.status
    return None


def _owner_choices(form) -> None:
    form.owner_id.choices = choices((u.id, f"{u.full_name} ({u.username})") for u in _users_with("quality.manage"))


@bp.route("/new", methods=["GET", "POST"])
@permission_required("quality.manage")
def create():
    form = ChangeForm()
    _owner_choices(form)
    _scope_choices(form)
    if request.method == "GET":
        form.owner_id.data = current_user.id
    created: list[ChangeControl] = []
    status = 200
    if form.validate_on_submit():
        status = _save(form, lambda: created.append(services.create_change(
            actor=current_user, document_ids=form.documents.data or [],
            job_function_ids=form.job_functions.data or [], **_values(form))))
        if status is None:
            flash(f"{created[0].number} was raised in Draft.", "success")
            return redirect(url_for("change_control.show", change_id=created[0].id))
    elif form.errors:
        status = 422
    return render_template("qms/change_control/form.html", form=form, change=None), status


@bp.route("/<int:change_id>/edit", methods=["GET", "POST"])
@permission_required("quality.manage")
def edit(change_id: int):
    change = _change(change_id)
    form = ChangeForm(obj=change)
    del form.documents, form.job_functions
    _owner_choices(form)
    if request.method == "GET":
        form.expected_version.data = str(change.row_version)
    status = 200
    if form.validate_on_submit():
        status = _save(form, lambda: services.update_change(
            change, actor=current_user, expected_row_version=(form.expected_version.data or "").strip(),
            **_values(form)), reason=form.reason.data)
        if status is None:
            flash(f"{change.number} saved.", "success")
            return redirect(url_for("change_control.show", change_id=change.id))
    elif form.errors:
        status = 422
    return render_template("qms/change_control/form.html", form=form, change=change), status


@bp.route("/<int:change_id>/scope", methods=["GET", "POST"])
@permission_required("quality.manage")
def scope(change_id: int):
    change = _change(change_id)
    form = ScopeForm()
    _scope_choices(form)
    if request.method == "GET":
        form.expected_version.data = str(change.row_version)
        form.documents.data = [r.document_id for r in change.documents]
        form.job_functions.data = [r.job_function_id for r in change.job_functions]
    status = 200
    if form.validate_on_submit():
        status = _save(form, lambda: services.set_scope(
            change, actor=current_user, expected_row_version=(form.expected_version.data or "").strip(),
            document_ids=form.documents.data or [], job_function_ids=form.job_functions.data or []))
        if status is None:
            flash("Affected documents and job functions saved.", "success")
            return redirect(url_for("change_control.show", change_id=change.id))
    elif form.errors:
        status = 422
    return render_template("qms/change_control/scope.html", form=form, change=change), status


def _task_form() -> TaskForm:
    form = TaskForm()
    form.task_owner_id.choices = choices((u.id, f"{u.full_name} ({u.username})") for u in _users_with(None))
    return form


@bp.route("/<int:change_id>")
@permission_required("quality.view")
def show(change_id: int, task_form: TaskForm | None = None):
    change = _change(change_id)
    functions = list(db.session.scalars(sa.select(JobFunction).where(
        JobFunction.id.in_([r.job_function_id for r in change.job_functions])).order_by(JobFunction.code)))
    signatures = [(s, signing.status(s, change), signing.manifestation(s)) for s in signing.signatures_for(change)]
    return render_template(
        "qms/change_control/record.html", change=change, progress=services.progress(change), functions=functions,
        signatures=signatures, task_form=task_form or _task_form(), status_form=TaskStatusForm(),
        history=record_history(ChangeControl, change.id) if current_user.can("audit.view") else None,
        CHANGE_TYPES=CHANGE_TYPES, RISK_LEVELS=RISK_LEVELS, TASK_STATUS_LABELS=TASK_STATUS_LABELS,
        today=now_utc().date()), 200


@bp.route("/<int:change_id>/tasks", methods=["POST"])
@permission_required("quality.manage")
def add_task(change_id: int):
    change = _change(change_id)
    form = _task_form()
    if form.validate_on_submit():
        status = _save(form, lambda: services.add_task(change, actor=current_user, title=form.task_title.data,
                                                       owner_id=form.task_owner_id.data, due_on=form.due_on.data))
        if status is None:
            flash("Task added.", "success")
            return redirect(url_for("change_control.show", change_id=change.id))
        if status != 422:
            return redirect(url_for("change_control.show", change_id=change.id)), 303
    page, _status = show(change_id, task_form=form)
    return page, 422


@bp.route("/<int:change_id>/tasks/<int:task_id>", methods=["POST"])
@permission_required("quality.view")
def task_status(change_id: int, task_id: int):
    task = db.session.get(ChangeTask, task_id)
    if task is None or task.change_id != change_id:
        abort(404, description=f"Change control {change_id} has no task {task_id}.")
    form = TaskStatusForm()
    if not form.validate_on_submit():
        flash("; ".join(e for errors in form.errors.values() for e in errors), "danger")
        return redirect(url_for("change_control.show", change_id=change_id)), 303
    try:
        with transaction():
            services.set_task_status(task, actor=current_user, status=form.status.data, note=form.note.data)
    except AttestError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("change_control.show", change_id=change_id)), 303
    flash(f"Task “{task.title}” is {TASK_STATUS_LABELS[task.status]}.", "success")
    return redirect(url_for("change_control.show", change_id=change_id))


def _outstanding(change: ChangeControl, transition) -> dict:
    """The signing page's panel on closing: who has open training (named in the closure note on an override)."""
    return {"outstanding": [(user, item) for item in services.progress(change)
                            for user, _due, _late in item.outstanding]}


ceremony.expose(bp, services.LIFECYCLE, rule="/<int:change_id>", load=_change,
                url_args=lambda change: {"change_id": change.id},
                back=lambda change: url_for("change_control.show", change_id=change.id),
                panels={"close": "qms/change_control/_sign_outstanding.html",
                        "close-override": "qms/change_control/_sign_outstanding.html"},
                context=_outstanding)
