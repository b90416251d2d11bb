"""Organisation pages: sites and departments (read by everyone; created by administrators). Views parse, validate,
call core.org.services inside one transaction and render. The job functions' section and pages are training's
(training.job_functions), shown here through the page's slots; the form helpers below serve them too."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import ValidationError as FieldError

from core.audit import ReasonRequired
from core.auth.access import permission_required
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices, show_error
from core.forms import coerce_optional_id as _optional_int  # bounded: no database overflow
from core.org import Department, Site, services

bp = Blueprint("org", __name__, url_prefix="/org")

VIEW = "org.view"
MANAGE_SITES = "users.manage"


def _rule(problem):
    """A form validator from a core.org.services rule, so that every field's problem is shown at once."""

    def validate(form, field) -> None:
        message = problem(field.data)
        if message:
            raise FieldError(message)

    return validate


def _upper(value):
    return services.normalise_code(value) if value is not None else value


def code_field() -> StringField:
    return StringField("Code", filters=[_upper], validators=[_rule(services.code_problem)],
                       render_kw={"autocapitalize": "characters", "maxlength": 32})


def name_field() -> StringField:
    return StringField("Name", validators=[_rule(services.name_problem)], render_kw={"maxlength": 200})


class SiteForm(FlaskForm):
    code = code_field()
    name = name_field()
    timezone = StringField("Time zone", default="UTC", validators=[_rule(services.timezone_problem)])


class DepartmentForm(FlaskForm):
    site_id = SelectField("Site", coerce=_optional_int, validate_choice=False,
                          validators=[_rule(lambda v: None if v else "Choose the site the department belongs to.")])
    code = code_field()
    name = name_field()


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


def form_page(form, *, title: str, submit: str, cancel: str, readonly: dict[str, str] | None = None):
    """The one form page of the organisation: its fields in order, each with its errors and help."""
    return render_template("core/org/form.html", form=form, title=title, submit=submit, cancel=cancel,
                           readonly=readonly or {}, help=FIELD_HELP), 422 if form.errors else 200


# --- reading --------------------------------------------------------------------------------------------------------


@bp.route("/")
@permission_required(VIEW)
def index():
    sites = list(db.session.scalars(sa.select(Site).order_by(Site.code)))
    departments: dict[int, list[Department]] = {}
    for department in db.session.scalars(sa.select(Department).order_by(Department.code)):
        departments.setdefault(department.site_id, []).append(department)
    return render_template("core/org/index.html", sites=sites, departments=departments)


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
    return form_page(form, title="New site", submit="Create site", cancel=url_for("org.index"))


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
    return form_page(form, title="New department", submit="Create department", cancel=url_for("org.index"))
