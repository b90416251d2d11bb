"""Team qualification matrix, the point-in-time qualification lookup and personal training records (page and PDF).

Every answer comes from training.qualification.services, which reads the history; these pages only parse, ask and
show. Times a
person types ("as of") are read in their own time zone and converted to UTC once, here; the page then names both.

Who sees what: a supervisor sees their direct reports; people who inspect or run training across the organisation
(training.manage: coordinators; audit.view: QA and auditors) may choose any department. Anyone's record needs
training.view_team; one's own record needs training.view_own and lives at its own address (/training/records/mine),
so the permission a page needs never depends on whose id is in the URL.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Blueprint, Response, abort, render_template, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from core import audit
from core.auth.access import permission_required
from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from core.forms import choices
from core.org import Department
from core.web import user_zone
from training import items
from training.access import require_person_visible, sees_everyone
from training.models import TrainingAssignment, TrainingItem
from training.qualification import services as service
from training.qualification.pdf import CompletionLine, OpenLine, RecordHeader, Stamp, training_record_pdf
from training.read_and_sign import services as read_and_sign

bp = Blueprint("qualification", __name__, url_prefix="/training", template_folder="../templates")

VIEW_TEAM = "training.view_team"
VIEW_OWN = "training.view_own"
STATES = (service.QUALIFIED, service.IN_TRAINING, service.OVERDUE, service.NOT_QUALIFIED)



# --- "as of": a moment typed in the viewer's time zone --------------------------------------------------------------


def parse_moment(raw: str) -> datetime:
    """'2025-03-03T10:00' (what a datetime-local input sends) in the viewer's time zone, or with an explicit offset
    or Z; returned in UTC. Raises ValueError with the message for the field."""
    text = raw.strip().replace(" ", "T")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("Write the date and time as YYYY-MM-DD HH:MM.") from None
    try:
        if parsed.tzinfo is None:
            zone = user_zone()
            local = parsed.replace(tzinfo=zone)
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
                raise ValueError(f"{parsed:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks were put "
                                 f"forward).")
            parsed = local
        moment = parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 00:00 east of Greenwich lies before year 1 in UTC
        raise ValueError("The moment lies outside the years 1 to 9999 in UTC.") from None
    if moment > now_utc():
        raise ValueError("The moment must not be in the future: qualification is answered from what happened.")
    return moment


class MomentField(StringField):
    """A date-time in the viewer's time zone (empty: now); `.moment` holds it in UTC after validation."""

    moment: datetime | None = None

    def pre_validate(self, form) -> None:
        self.moment = None
        if self.data and self.data.strip():
            try:
                self.moment = parse_moment(self.data)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None


class _GetForm(FlaskForm):
    """A form sent with GET: it changes nothing, so it can be bookmarked and needs no CSRF token."""

    class Meta:
        csrf = False


class TeamFilterForm(_GetForm):
    department = SelectField("Department", validators=[Optional()], validate_choice=True)
    as_of = MomentField("As of (your local time)", validators=[Optional()],
                        render_kw={"type": "datetime-local", "step": "1"})


class LookupForm(_GetForm):
    username = StringField("Username", validators=[DataRequired(message="Username is required."), Length(max=64)],
                           render_kw={"autocapitalize": "none", "autocomplete": "off"})
    document = StringField("Document number", validators=[DataRequired(message="Document number is required."),
                                                           Length(max=64)],
                           render_kw={"autocapitalize": "characters", "placeholder": "SOP-QA-001"})
    at = MomentField("At (your local time)", validators=[Optional()],
                     render_kw={"type": "datetime-local", "step": "1"})

    def validate_username(self, field) -> None:
        self.user = db.session.scalar(sa.select(User).where(User.username == (field.data or "").strip().lower()))
        if self.user is None:
            raise ValidationError(f"There is no user {field.data.strip()!r}.")

    def validate_document(self, field) -> None:
        self.subject = items.find_subject(field.data)
        if self.subject is None:
            raise ValidationError(f"There is no document {field.data.strip()!r}.")


# --- team matrix ------------------------------------------------------------------------------------------------------


def _refuse_other_teams(me: User) -> None:
    """A supervisor asking for a department: refused and recorded like any other denial."""
    db.session.rollback()
    with transaction():
        audit.record_event("permission.denied", subject=me, permission=VIEW_TEAM, scope="other teams",
                           method=request.method, path=request.full_path.rstrip("?"))
    abort(403, description="Supervisors see their own direct reports only; choosing a department needs the "
                           "permission to maintain the training matrix (training.manage) or to see audit trails "
                           "(audit.view).")


@bp.route("/team")
@permission_required(VIEW_TEAM)
def team():
    me = current_user._get_current_object()
    org_wide = sees_everyone(me)
    form = TeamFilterForm(formdata=request.args)
    form.department.choices = choices([("", "My direct reports")]
                                      + [(str(d.id), f"{d.code} — {d.name}") for d in service.departments()])
    if request.args.get("department") and not org_wide:
        _refuse_other_teams(me)
    status = 200
    if request.args and not form.validate():
        status = 422
    department = None
    if org_wide and not form.department.errors and form.department.data:
        department = db.session.get(Department, int(form.department.data))
    at = form.as_of.moment if not form.as_of.errors else None
    members = (service.team_members(department_id=department.id) if department is not None
               else service.team_members(supervisor=me))
    documents, cells = service.team_matrix(members, at)
    counts = Counter(c.state for c in cells.values())
    return render_template("training/qualification/team.html", form=form, org_wide=org_wide, department=department,
                           at=at, members=members, documents=documents, cells=cells, STATES=STATES,
                           labels=service.STATE_LABELS, counts=counts,
                           as_of_arg=form.as_of.data if at else None), status


# --- point-in-time lookup ---------------------------------------------------------------------------------------------


@bp.route("/qualification")
@permission_required(VIEW_TEAM)
def lookup():
    form = LookupForm(formdata=request.args)
    answer = required_then = None
    status = 200
    if request.args:
        if form.validate():
            answer = service.qualification(form.user, form.subject, form.at.moment)
            required_then = bool(service.requirements_for(form.user.id, form.subject.id, answer.at))
        else:
            status = 422
    return render_template("training/qualification/lookup.html", form=form, answer=answer,
                           required_then=required_then), status


# --- training records -------------------------------------------------------------------------------------------------


def _record_context(user: User) -> dict:
    open_rows, _done = read_and_sign.my_assignments(user.id)
    today = now_utc().date()
    return {"person": user, "lines": service.training_record(user),
            "job_functions": service.job_function_codes(user.id), "open_rows": open_rows,
            "overdue": {a.id for a in open_rows if read_and_sign.is_overdue(a, today)},
            "open_items": _items_of(open_rows)}


def _items_of(assignments: list[TrainingAssignment]) -> dict[int, TrainingItem]:
    """item id -> item (with its subject) of these assignments, in one query."""
    ids = {a.item_id for a in assignments}
    if not ids:
        return {}
    return {i.id: i for i in db.session.scalars(sa.select(TrainingItem).where(TrainingItem.id.in_(ids))
                                                .options(sa.orm.selectinload(TrainingItem.subject)))}


def _person(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description=f"There is no user with id {user_id}.")
    require_person_visible(user)
    return user


def _record_page(user: User):
    return render_template("training/qualification/record.html", own=user.id == current_user.id,
                           **_record_context(user))


def _stamp(signature) -> Stamp | None:
    if signature is None:
        return None
    return Stamp(signature.printed_name, signature.signed_at, signature.meaning, signature.content_sha256,
                 signature.auth_method)


def _record_pdf(user: User) -> Response:
    context = _record_context(user)
    generated_at = now_utc()
    header = RecordHeader(full_name=user.full_name, username=user.username,
                          department=user.department.name if user.department else None,
                          job_functions=tuple(context["job_functions"]), generated_by=current_user.full_name,
                          generated_at=generated_at)
    completions = [CompletionLine(number=line.subject.key, title=line.subject.title,
                                  revision=line.item.version_label, completed_at=line.assignment.completed_at,
                                  signature=_stamp(line.signature)) for line in context["lines"]]
    open_items = context["open_items"]
    open_lines = [OpenLine(number=open_items[a.item_id].subject.key, title=open_items[a.item_id].subject.title,
                           revision=open_items[a.item_id].version_label, due_on=a.due_on,
                           overdue=a.id in context["overdue"])
                  for a in context["open_rows"]]
    data = training_record_pdf(header, completions, open_lines)
    with transaction():
        audit.record_event("training_record.printed", subject=user, completions=len(completions),
                           printed_at=generated_at.isoformat())
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f"inline; filename=training-record-{user.username}-{generated_at:%Y%m%d}.pdf"})


@bp.route("/records/mine")
@permission_required(VIEW_OWN)
def my_record():
    return _record_page(current_user._get_current_object())


@bp.route("/records/mine.pdf")
@permission_required(VIEW_OWN)
def my_record_pdf():
    return _record_pdf(current_user._get_current_object())


@bp.route("/records/<int:user_id>")
@permission_required(VIEW_TEAM)
def record(user_id: int):
    return _record_page(_person(user_id))


@bp.route("/records/<int:user_id>.pdf")
@permission_required(VIEW_TEAM)
def record_pdf(user_id: int):
    return _record_pdf(_person(user_id))
