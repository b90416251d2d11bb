"""People and their job functions: who holds what, since when and until when; training coordinators grant and end
job functions here, and the person's training is reconciled in the same transaction (training.people.services).

Reading needs training.view_team (coordinators, supervisors, QA, auditors); changing needs training.manage. Dates are
calendar days as the system counts them (UTC, like the assignment engine). A day later than today is refused: no job
applies a future change on its day yet, so the training it implies would silently never be assigned or cancelled.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional
from wtforms.validators import ValidationError as FieldError

from core.audit.views import record_history
from core.auth.access import permission_required
from core.auth.models import User
from core.clock import now_utc
from core.converters import record_id
from core.db import db
from core.forms import ReasonMixin, choices
from core.forms import coerce_optional_id as _optional_int  # bounded: no database overflow
from core.org import Department, JobFunction, Site
from core.org.views import save_form
from training.access import require_person_visible, sees_everyone
from training.models import OPEN, TrainingAssignment, UserJobFunction
from training.people import services

bp = Blueprint("people", __name__, url_prefix="/training/people", template_folder="../templates")

VIEW = "training.view_team"
MANAGE = "training.manage"
LIST_LIMIT = 200
DATE_FORMAT = "Write the date as YYYY-MM-DD."


def _today() -> date:
    return now_utc().date()


def _not_future(form, field) -> None:
    if field.data and field.data > _today():
        raise FieldError(f"{field.data.isoformat()} is later than today ({_today().isoformat()}): enter the change on "
                         f"its day.")


class GrantForm(FlaskForm):
    job_function_id = SelectField("Job function", coerce=_optional_int, validate_choice=False)
    valid_from = DateField("From (first day held)", default=_today, invalid_value_message=DATE_FORMAT,
                           validators=[InputRequired(message="From is required."), _not_future])
    reason = TextAreaField("Reason or reference (optional)", validators=[Optional(), Length(max=1000)])

    def validate_job_function_id(self, field) -> None:
        if not field.data:
            raise FieldError("Choose the job function to grant.")


class EndForm(ReasonMixin, FlaskForm):
    valid_to = DateField("No longer held from", default=_today, invalid_value_message=DATE_FORMAT,
                         validators=[InputRequired(message="No longer held from is required.")])


def _person(username: str) -> User:
    person = db.session.scalar(sa.select(User).where(User.username == username.lower()))
    if person is None:
        abort(404, description=f"There is no user {username!r}.")
    return person


def _held_now(user_ids: list[int]) -> dict[int, list[str]]:
    """user id -> codes of the job functions they hold today."""
    today = _today()
    rows = db.session.execute(
        sa.select(UserJobFunction.user_id, JobFunction.code)
        .join(JobFunction, JobFunction.id == UserJobFunction.job_function_id)
        .where(UserJobFunction.user_id.in_(user_ids), UserJobFunction.valid_from <= today,
               sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > today))
        .order_by(JobFunction.code))
    held: dict[int, list[str]] = {}
    for user_id, code in rows:
        held.setdefault(user_id, []).append(code)
    return held


@bp.route("/")
@permission_required(VIEW)
def index():
    q = (request.args.get("q") or "").strip()[:100]
    department_id = request.args.get("department", type=record_id)
    job_function_id = request.args.get("job_function", type=record_id)
    status = request.args.get("status", "active")
    stmt = sa.select(User).options(sa.orm.selectinload(User.department), sa.orm.selectinload(User.supervisor))
    if not sees_everyone(current_user):
        stmt = stmt.where(User.supervisor_id == current_user.id)  # a supervisor sees their direct reports
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(sa.or_(sa.func.lower(User.username).like(like), sa.func.lower(User.full_name).like(like)))
    if department_id:
        stmt = stmt.where(User.department_id == department_id)
    if job_function_id:
        today = _today()
        stmt = stmt.where(User.id.in_(sa.select(UserJobFunction.user_id).where(
            UserJobFunction.job_function_id == job_function_id, UserJobFunction.valid_from <= today,
            sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > today))))
    if status != "all":
        stmt = stmt.where(User.active.is_(True))
    people = list(db.session.scalars(stmt.order_by(User.full_name, User.username).limit(LIST_LIMIT)))
    departments = db.session.execute(sa.select(Department, Site.code).join(Site, Site.id == Department.site_id)
                                     .order_by(Site.code, Department.code)).all()
    functions = list(db.session.scalars(sa.select(JobFunction).order_by(JobFunction.code)))
    return render_template("training/people/index.html", people=people, held=_held_now([u.id for u in people]),
                           q=q, department_id=department_id, job_function_id=job_function_id, status=status,
                           departments=departments, functions=functions, limit=LIST_LIMIT)


def _rows(person: User) -> list[tuple[UserJobFunction, JobFunction]]:
    return [(held, function) for held, function in db.session.execute(
        sa.select(UserJobFunction, JobFunction).join(JobFunction, JobFunction.id == UserJobFunction.job_function_id)
        .where(UserJobFunction.user_id == person.id)
        .order_by(UserJobFunction.valid_from.desc(), JobFunction.code))]


def _page(person: User, *, grant_form: GrantForm | None = None, end_form: EndForm | None = None,
          end_id: int | None = None, status: int = 200):
    today = _today()
    rows = _rows(person)
    current = [(h, f) for h, f in rows if h.valid_from <= today and (h.valid_to is None or h.valid_to > today)]
    later = [(h, f) for h, f in rows if h.valid_from > today and (h.valid_to is None or h.valid_to > h.valid_from)]
    past = [(h, f) for h, f in rows if (h, f) not in current and (h, f) not in later]
    taken = {h.job_function_id for h, _f in current + later if h.valid_to is None}
    grant_form = grant_form or GrantForm(formdata=None)
    grant_form.job_function_id.choices = choices([(None, "— choose —")] + [
        (f.id, f"{f.code} — {f.name}") for f in db.session.scalars(
            sa.select(JobFunction).where(JobFunction.active.is_(True)).order_by(JobFunction.code))
        if f.id not in taken])
    history = None
    if current_user.can("audit.view"):
        history = sorted((entry for h, _f in rows for entry in record_history(UserJobFunction, h.id)),
                         key=lambda entry: entry.tx.id)
    open_training = db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment).where(
        TrainingAssignment.user_id == person.id, TrainingAssignment.status == OPEN))
    return render_template("training/people/show.html", person=person, current=current, later=later, past=past,
                           grant_form=grant_form, end_form=end_form, end_id=end_id, today=today, history=history,
                           open_training=open_training, can_manage=current_user.can(MANAGE)), status


@bp.route("/<username>")
@permission_required(VIEW)
def show(username: str):
    person = _person(username)
    require_person_visible(person)
    return _page(person)


def _training(change: services.JobFunctionChange, *, ending: bool = False) -> str:
    """'4 training assignments created' (and what else the reconciliation did), for the flash message."""
    created = f"{change.created} training assignment{'' if change.created == 1 else 's'} created"
    cancelled = f"{change.cancelled} open training assignment{'' if change.cancelled == 1 else 's'} cancelled"
    first, other, other_count = (cancelled, created, change.created) if ending else (created, cancelled,
                                                                                      change.cancelled)
    return f"{first}; {other}" if other_count else first


def _done(person: User, change: services.JobFunctionChange, what: str):
    code = db.session.get(JobFunction, change.held.job_function_id).code
    flash(f"{code} {what}.", "success")
    return redirect(url_for("people.show", username=person.username), 303)


@bp.route("/<username>/job-functions", methods=["POST"])
@permission_required(MANAGE)
def grant(username: str):
    person = _person(username)
    form = GrantForm()
    if form.validate_on_submit():
        change = save_form(form, lambda: services.grant_job_function(
            person, form.job_function_id.data, valid_from=form.valid_from.data, actor=current_user),
            reason=form.reason.data)
        if change is not None:
            return _done(person, change, f"granted to {person.username} from {change.held.valid_from.isoformat()}; "
                                         f"{_training(change)}")
    return _page(person, grant_form=form, status=422)


@bp.route("/<username>/job-functions/<int:held_id>/end", methods=["POST"])
@permission_required(MANAGE)
def end(username: str, held_id: int):
    person = _person(username)
    held = db.session.get(UserJobFunction, held_id)
    if held is None or held.user_id != person.id:
        abort(404, description=f"{person.username} has no job function record {held_id}.")
    if held.valid_to is not None and held.valid_to <= _today():
        flash("This job function had already ended; nothing was changed.", "warning")
        return redirect(url_for("people.show", username=person.username), 303)
    form = EndForm()
    if form.validate_on_submit():
        latest = max(_today(), held.valid_from)  # a function that starts later may be ended on its first day
        if form.valid_to.data > latest:
            form.valid_to.errors.append(f"{form.valid_to.data.isoformat()} is later than {latest.isoformat()}: "
                                        f"enter the change on its day.")
        else:
            change = save_form(form, lambda: services.end_job_function(held, valid_to=form.valid_to.data,
                                                                        actor=current_user), reason=form.reason.data)
            if change is not None:
                return _done(person, change, f"ended for {person.username}: no longer held from "
                                             f"{change.held.valid_to.isoformat()}; {_training(change, ending=True)}")
    return _page(person, end_form=form, end_id=held.id, status=422)
