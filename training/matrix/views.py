"""Training coordinator pages: the training matrix (grid and cell editor), gap analysis, manual and bulk assignment."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from core.audit.views import record_history
from core.auth.access import permission_required
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices, show_error
from core.org import Department, JobFunction, Site
from training.matrix import assignments as admin
from training.matrix import services as matrix_service
from training.models import RETRAIN_EVERY, RETRAIN_POLICIES, TrainingRequirement, TrainingSubject

bp = Blueprint("training_matrix", __name__, url_prefix="/training", template_folder="../templates")

MANAGE = "training.manage"



class RequirementForm(FlaskForm):
    required = BooleanField("Holders of this job function must be trained on this document")
    retrain = SelectField("Retrain on", choices=choices(RETRAIN_POLICIES.items()), default=RETRAIN_EVERY)
    recurrence_months = IntegerField("Retrain every (months)", validators=[
        Optional(), NumberRange(min=1, max=120, message="Retrain every must be 1 to 120 months (or empty).")])
    days_allowed = IntegerField("Days allowed for a newly assigned person", validators=[
        Optional(), NumberRange(min=0, max=365, message="Days allowed must be 0 to 365 (or empty).")])
    valid_from = DateField("Valid from", validators=[Optional()])
    valid_to = DateField("Valid until", validators=[Optional()])
    requirement_reason = TextAreaField("Why it is required", validators=[
        Optional(), Length(max=2000, message="Why it is required must be at most 2,000 characters.")])
    reason = TextAreaField("Reason for change", validators=[Optional(), Length(max=1000)])


class AssignForm(FlaskForm):
    document = StringField("Document number", validators=[DataRequired(message="Document number is required."),
                                                          Length(max=40)])
    site_id = SelectField("Site", coerce=int, default=0)
    department_id = SelectField("Department", coerce=int, default=0)
    job_function_id = SelectField("Job function", coerce=int, default=0)
    usernames = TextAreaField("Usernames (one per line or separated by commas)", validators=[Length(max=200_000)])
    due_on = DateField("Due on", validators=[DataRequired(message="Due date is required (YYYY-MM-DD).")])
    reason = TextAreaField("Reason", validators=[DataRequired(message="Reason is required."), Length(max=2000)])


def _any(label: str, rows) -> list:
    return choices([(0, f"— any {label} —"), *rows])


@bp.route("/matrix")
@permission_required(MANAGE)
def matrix():
    department_id = request.args.get("department", type=int) or None
    category = request.args.get("type") or None
    query = (request.args.get("q") or "").strip()[:100] or None
    subjects, functions, cells = matrix_service.grid(department_id=department_id, category=category, query=query)
    departments = list(db.session.scalars(sa.select(Department).order_by(Department.code)))
    return render_template("training/matrix/matrix.html", subjects=subjects, functions=functions, cells=cells,
                           departments=departments, types=matrix_service.categories(), department_id=department_id,
                           doc_type=category, query=query or "", RETRAIN_POLICIES=RETRAIN_POLICIES)


@bp.route("/matrix/<int:subject_id>/<int:job_function_id>", methods=["GET", "POST"])
@permission_required(MANAGE)
def requirement(subject_id: int, job_function_id: int):
    subject = db.session.get(TrainingSubject, subject_id)
    function = db.session.get(JobFunction, job_function_id)
    if subject is None or function is None:
        abort(404, description="No such document or job function.")
    row = matrix_service.requirement(subject, job_function_id)
    form = RequirementForm(obj=row)
    if request.method == "GET":
        form.required.data = row is not None
        form.requirement_reason.data = row.reason if row is not None else None
        form.reason.data = None  # the reason for change is typed anew, never the requirement's own reason
    if form.validate_on_submit():
        reason = (form.reason.data or "").strip() or None
        try:
            with transaction(reason=reason):
                if form.required.data:
                    _saved, assigned = matrix_service.set_requirement(
                        subject, job_function_id, retrain=form.retrain.data,
                        recurrence_months=form.recurrence_months.data, days_allowed=form.days_allowed.data,
                        valid_from=form.valid_from.data, valid_to=form.valid_to.data,
                        reason=form.requirement_reason.data, actor=current_user)
                    message = (f"{function.code} now requires {subject.key}; {assigned} people assigned."
                               if row is None else f"Requirement {function.code} → {subject.key} changed.")
                elif row is not None:
                    cancelled = matrix_service.remove_requirement(row, actor=current_user)
                    message = (f"{function.code} no longer requires {subject.key}; {cancelled} open "
                               f"assignments cancelled.")
                else:
                    raise ValidationError("required", "Nothing to save: tick the box to add the requirement.")
        except ValidationError as exc:
            show_error(form, exc)
        except AttestError as exc:
            flash(exc.message, "danger")
        else:
            flash(message, "success")
            return redirect(url_for("training_matrix.matrix", q=subject.key))
    holders = matrix_service.holders_count([job_function_id])
    history = record_history(TrainingRequirement, row.id) if row is not None and current_user.can("audit.view") \
        else None
    return render_template("training/matrix/requirement.html", form=form, subject=subject, function=function,
                           row=row, holders=holders, history=history), 422 if form.errors else 200


@bp.route("/gaps")
@permission_required(MANAGE)
def gaps():
    return render_template("training/matrix/gaps.html", gaps=matrix_service.gap_analysis())


@bp.route("/assign", methods=["GET", "POST"])
@permission_required(MANAGE)
def assign():
    form = AssignForm()
    form.site_id.choices = _any("site", [(s.id, f"{s.code} — {s.name}") for s in
                                         db.session.scalars(sa.select(Site).order_by(Site.code))])
    form.department_id.choices = _any("department", [(d.id, f"{d.code} — {d.name}") for d in
                                                     db.session.scalars(sa.select(Department)
                                                                        .order_by(Department.code))])
    form.job_function_id.choices = _any("job function", [(j.id, f"{j.code} — {j.name}") for j in
                                                         db.session.scalars(sa.select(JobFunction)
                                                                            .where(JobFunction.active.is_(True))
                                                                            .order_by(JobFunction.code))])
    if request.method == "GET" and request.args.get("document"):
        form.document.data = request.args["document"][:40]
    if form.validate_on_submit():
        names = [n for part in (form.usernames.data or "").replace(",", "\n").splitlines() for n in [part.strip()] if n]
        selection = admin.Selection(site_id=form.site_id.data or None, department_id=form.department_id.data or None,
                                    job_function_id=form.job_function_id.data or None, usernames=names)
        try:
            with transaction(reason=form.reason.data):
                subject = admin.find_subject(form.document.data)
                result = admin.assign_manually(subject, selection, due_on=form.due_on.data,
                                               reason=form.reason.data, actor=current_user)
        except ValidationError as exc:
            show_error(form, exc)
        except AttestError as exc:
            flash(exc.message, "danger")
        else:
            text = (f"{result.created} people assigned {subject.key} {subject.version_noun} "
                    f"{result.item.version_label}, due "
                    f"{form.due_on.data.isoformat()}.")
            if result.already_open:
                text += (f" {len(result.already_open)} already had open training on it and were left as they are: "
                         f"{', '.join(result.already_open[:20])}{' …' if len(result.already_open) > 20 else ''}.")
            flash(text, "success")
            return redirect(url_for("training_matrix.assign"))
    return render_template("training/matrix/assign.html", form=form), 422 if form.errors else 200
