"""Organisation pages: sites, departments and job functions (read by everyone; created and changed by the people
responsible for them). Views parse, validate, call core.org.services inside one transaction and render."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import ValidationError as FieldError

from core.audit import ReasonRequired
from core.audit.views import record_history
from core.auth.access import permission_required
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import ReasonForm, ReasonMixin, choices, show_error
from core.forms import coerce_optional_id as _optional_int  # bounded: no database overflow
from core.org import Department, JobFunction, Site, services

bp = Blueprint("org", __name__, url_prefix="/org")

VIEW = "org.view"
MANAGE_SITES = "users.manage"
MANAGE_FUNCTIONS = "training.manage"


def _rule(problem):
    """A form validator from a core.org.services rule, so that every field's problem is shown at once."""

    def validate(form, field) -> None:
        message = problem(field.data)
        if message:
            raise FieldError(message)

    return validate


def _upper(value):
    return services.normalise_code(value) if value is not None else value


def _code() -> StringField:
    return StringField("Code", filters=[_upper], validators=[_rule(services.code_problem)],
                       render_kw={"autocapitalize": "characters", "maxlength": 32})


def _name() -> StringField:
    return StringField("Name", validators=[_rule(services.name_problem)], render_kw={"maxlength": 200})


def _department() -> SelectField:
    return SelectField("Department", coerce=_optional_int, validate_choice=False)


class SiteForm(FlaskForm):
    code = _code()
    name = _name()
    timezone = StringField("Time zone", default="UTC", validators=[_rule(services.timezone_problem)])


class DepartmentForm(FlaskForm):
    site_id = SelectField("Site", coerce=_optional_int, validate_choice=False,
                          validators=[_rule(lambda v: None if v else "Choose the site the department belongs to.")])
    code = _code()
    name = _name()


class JobFunctionForm(FlaskForm):
    code = _code()
    name = _name()
    department_id = _department()


class EditJobFunctionForm(ReasonMixin, FlaskForm):
    name = _name()
    department_id = _department()


def _department_choices(form) -> None:
    rows = db.session.execute(sa.select(Department, Site.code).join(Site, Site.id == Department.site_id)
                              .order_by(Site.code, Department.code)).all()
    form.department_id.choices = choices([(None, "— none (site-wide) —")] +
                                         [(d.id, f"{site} / {d.code} — {d.name}") for d, site in rows])



def save_form(form, action, *, reason: str | None = None, duplicate_field: str | None = None):
    """Run the service call `action` in one transaction (with the reason for change) and return its result; or, when
    it is refused, put the message under the field it names (else flash it) and return None. Nothing is written then.
    With `duplicate_field`, a unique constraint violated by a concurrent request is shown on that field."""
    try:
        with transaction(reason=reason):
            return action()
    except ValidationError as exc:
        show_error(form, exc)
    except ReasonRequired as exc:  # the audit guard: an existing record changed without a reason for change
        show_error(form, ValidationError("reason", str(exc)))
    except sa.exc.IntegrityError:
        if duplicate_field is None:
            raise
        show_error(form, ValidationError(duplicate_field, "This code was taken meanwhile; choose another."))
    except AttestError as exc:
        flash(exc.message, "danger")
    return None


FIELD_HELP = {
    "code": "Upper-case letters, digits and dashes (e.g. OP-MIX). Never changed or reused once created.",
    "timezone": "IANA name, e.g. Europe/Zurich or America/New_York.",
    "reason": "Recorded in the audit trail with the change.",
}


def _form_page(form, *, title: str, submit: str, cancel: str, readonly: dict[str, str] | None = None):
    """The one form page of the organisation: its fields in order, each with its errors and help."""
    return render_template("core/org/form.html", form=form, title=title, submit=submit, cancel=cancel,
                           readonly=readonly or {}, help=FIELD_HELP), 422 if form.errors else 200


def _job_function(job_function_id: int) -> JobFunction:
    function = db.session.get(JobFunction, job_function_id)
    if function is None:
        abort(404, description=f"There is no job function with id {job_function_id}.")
    return function


# --- reading --------------------------------------------------------------------------------------------------------


@bp.route("/")
@permission_required(VIEW)
def index():
    sites = list(db.session.scalars(sa.select(Site).order_by(Site.code)))
    departments: dict[int, list[Department]] = {}
    for department in db.session.scalars(sa.select(Department).order_by(Department.code)):
        departments.setdefault(department.site_id, []).append(department)
    functions = list(db.session.scalars(sa.select(JobFunction).options(sa.orm.selectinload(JobFunction.department))
                                        .order_by(JobFunction.active.desc(), JobFunction.code)))
    return render_template("core/org/index.html", sites=sites, departments=departments, functions=functions,
                           holders=services.holder_counts())


@bp.route("/job-functions/<int:job_function_id>")
@permission_required(VIEW)
def job_function(job_function_id: int):
    function = _job_function(job_function_id)
    history = record_history(JobFunction, function.id) if current_user.can("audit.view") else None
    return render_template("core/org/job_function.html", function=function, history=history,
                           holders=services.holder_counts([function.id]).get(function.id, 0),
                           in_use=services.holder_counts([function.id], including_later=True).get(function.id, 0))


# --- sites and departments ------------------------------------------------------------------------------------------


@bp.route("/sites/new", methods=["GET", "POST"])
@permission_required(MANAGE_SITES)
def create_site():
    form = SiteForm()
    if form.validate_on_submit():
        site = save_form(form, lambda: services.create_site(code=form.code.data, name=form.name.data,
                                                             timezone=form.timezone.data, actor=current_user),
                         duplicate_field="code")
        if site is not None:
            flash(f"Site {site.code} ({site.name}, {site.timezone}) was created.", "success")
            return redirect(url_for("org.index"), 303)
    return _form_page(form, title="New site", submit="Create site", cancel=url_for("org.index"))


@bp.route("/departments/new", methods=["GET", "POST"])
@permission_required(MANAGE_SITES)
def create_department():
    form = DepartmentForm()
    form.site_id.choices = choices([(None, "— choose —")] + [(s.id, f"{s.code} — {s.name}") for s in
                                                             db.session.scalars(sa.select(Site).order_by(Site.code))])
    if request.method == "GET":
        form.site_id.data = request.args.get("site", type=int)
    if form.validate_on_submit():
        department = save_form(form, lambda: services.create_department(
            site_id=form.site_id.data, code=form.code.data, name=form.name.data, actor=current_user),
            duplicate_field="code")
        if department is not None:
            flash(f"Department {department.code} ({department.name}) was created at site {department.site.code}.",
                  "success")
            return redirect(url_for("org.index"), 303)
    return _form_page(form, title="New department", submit="Create department", cancel=url_for("org.index"))


# --- job functions --------------------------------------------------------------------------------------------------


@bp.route("/job-functions/new", methods=["GET", "POST"])
@permission_required(MANAGE_FUNCTIONS)
def create_job_function():
    form = JobFunctionForm()
    _department_choices(form)
    if form.validate_on_submit():
        function = save_form(form, lambda: services.create_job_function(
            code=form.code.data, name=form.name.data, department_id=form.department_id.data, actor=current_user),
            duplicate_field="code")
        if function is not None:
            flash(f"Job function {function.code} ({function.name}) was created.", "success")
            return redirect(url_for("org.job_function", job_function_id=function.id), 303)
    return _form_page(form, title="New job function", submit="Create job function", cancel=url_for("org.index"))


@bp.route("/job-functions/<int:job_function_id>/edit", methods=["GET", "POST"])
@permission_required(MANAGE_FUNCTIONS)
def edit_job_function(job_function_id: int):
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
            return redirect(url_for("org.job_function", job_function_id=function.id), 303)
    return _form_page(form, title=f"Change job function {function.code}", submit="Save",
                      cancel=url_for("org.job_function", job_function_id=function.id),
                      readonly={"Code": function.code})


def _reason_action(job_function_id: int, action, done: str):
    function = _job_function(job_function_id)
    form = ReasonForm()
    target = url_for("org.job_function", job_function_id=function.id)
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


@bp.route("/job-functions/<int:job_function_id>/deactivate", methods=["POST"])
@permission_required(MANAGE_FUNCTIONS)
def deactivate_job_function(job_function_id: int):
    return _reason_action(job_function_id, lambda f: services.deactivate_job_function(f, actor=current_user),
                          "Job function {code} was deactivated: it can no longer be given to anyone.")


@bp.route("/job-functions/<int:job_function_id>/reactivate", methods=["POST"])
@permission_required(MANAGE_FUNCTIONS)
def reactivate_job_function(job_function_id: int):
    return _reason_action(job_function_id, lambda f: services.reactivate_job_function(f, actor=current_user),
                          "Job function {code} is in use again.")
