"""Job function pages, under the organisation's address (/org/job-functions/...): read by everyone who sees the
organisation, created and changed by training coordinators. Views parse, validate, call
training.job_functions.services inside one transaction and render; the forms follow the organisation's (core.org)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField

from core.audit import ReasonRequired
from core.audit.views import record_history
from core.auth.access import permission_required
from core.db import db, transaction
from core.errors import AttestError
from core.forms import ReasonForm, ReasonMixin, choices
from core.forms import coerce_optional_id as _optional_int  # bounded: no database overflow
from core.org import Department, JobFunction, Site
from core.org.views import code_field, form_page, name_field, save_form
from training.job_functions import services

bp = Blueprint("job_functions", __name__, url_prefix="/org/job-functions", template_folder="../templates")

VIEW = "org.view"
MANAGE = services.MANAGE


def _department() -> SelectField:
    return SelectField("Department", coerce=_optional_int, validate_choice=False)


class JobFunctionForm(FlaskForm):
    code = code_field()
    name = name_field()
    department_id = _department()


class EditJobFunctionForm(ReasonMixin, FlaskForm):
    name = name_field()
    department_id = _department()


def _department_choices(form) -> None:
    rows = db.session.execute(sa.select(Department, Site.code).join(Site, Site.id == Department.site_id)
                              .order_by(Site.code, Department.code)).all()
    form.department_id.choices = choices([(None, "— none (site-wide) —")] +
                                         [(d.id, f"{site} / {d.code} — {d.name}") for d, site in rows])


def _job_function(job_function_id: int) -> JobFunction:
    function = db.session.get(JobFunction, job_function_id)
    if function is None:
        abort(404, description=f"There is no job function with id {job_function_id}.")
    return function


# --- on the organisation page (core.web slots) ---------------------------------------------------------------------


def org_actions() -> str:
    return render_template("training/job_functions/_org_actions.html")


def org_section() -> str:
    functions = list(db.session.scalars(sa.select(JobFunction).options(sa.orm.selectinload(JobFunction.department))
                                        .order_by(JobFunction.active.desc(), JobFunction.code)))
    return render_template("training/job_functions/_org_section.html", functions=functions,
                           holders=services.holder_counts())


# --- pages -----------------------------------------------------------------------------------------------------------


@bp.route("/<int:job_function_id>")
@permission_required(VIEW)
def show(job_function_id: int):
    function = _job_function(job_function_id)
    history = record_history(JobFunction, function.id) if current_user.can("audit.view") else None
    return render_template("training/job_functions/show.html", function=function, history=history,
                           holders=services.holder_counts([function.id]).get(function.id, 0),
                           in_use=services.holder_counts([function.id], including_later=True).get(function.id, 0))


@bp.route("/new", methods=["GET", "POST"])
@permission_required(MANAGE)
def create():
    form = JobFunctionForm()
    _department_choices(form)
    if form.validate_on_submit():
        function = save_form(form, lambda: services.create_job_function(
            code=form.code.data, name=form.name.data, department_id=form.department_id.data, actor=current_user),
            duplicate_field="code")
        if function is not None:
            flash(f"Job function {function.code} ({function.name}) was created.", "success")
            return redirect(url_for("job_functions.show", job_function_id=function.id), 303)
    return form_page(form, title="New job function", submit="Create job function", cancel=url_for("org.index"))


@bp.route("/<int:job_function_id>/edit", methods=["GET", "POST"])
@permission_required(MANAGE)
def edit(job_function_id: int):
    function = _job_function(job_function_id)
    form = EditJobFunctionForm(obj=function)
    _department_choices(form)
    if form.validate_on_submit():
        changed = save_form(form, lambda: services.update_job_function(
            function, name=form.name.data, department_id=form.department_id.data, actor=current_user),
            reason=form.reason.data)
        if changed is not None:
            flash(f"Job function {function.code} was updated." if changed else "Nothing was changed.",
                  "success" if changed else "info")
            return redirect(url_for("job_functions.show", job_function_id=function.id), 303)
    return form_page(form, title=f"Change job function {function.code}", submit="Save",
                     cancel=url_for("job_functions.show", job_function_id=function.id),
                     readonly={"Code": function.code})


def _reason_action(job_function_id: int, action, done: str):
    function = _job_function(job_function_id)
    form = ReasonForm()
    target = url_for("job_functions.show", job_function_id=function.id)
    if not form.validate_on_submit():
        for message in form.reason.errors:
            flash(f"Reason for change: {message}", "danger")
        return redirect(target, 303)
    try:
        with transaction(reason=form.reason.data):
            action(function)
    except (AttestError, ReasonRequired) as exc:
        flash(getattr(exc, "message", str(exc)), "danger")
    else:
        flash(done.format(code=function.code), "success")
    return redirect(target, 303)


@bp.route("/<int:job_function_id>/deactivate", methods=["POST"])
@permission_required(MANAGE)
def deactivate(job_function_id: int):
    return _reason_action(job_function_id, lambda f: services.deactivate_job_function(f, actor=current_user),
                          "Job function {code} was deactivated: it can no longer be given to anyone.")


@bp.route("/<int:job_function_id>/reactivate", methods=["POST"])
@permission_required(MANAGE)
def reactivate(job_function_id: int):
    return _reason_action(job_function_id, lambda f: services.reactivate_job_function(f, actor=current_user),
                          "Job function {code} is in use again.")
