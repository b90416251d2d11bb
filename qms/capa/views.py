"""CAPA pages: the register (search, filters), the record with its chain (source -> CAPA -> actions -> assignments ->
completions) and live training progress, the plan's forms; the steps of the CAPA's and its actions' lifecycles come
from their declarations through the shared signing view."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.routing import BuildError

from core.auth.access import permission_required
from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices, show_error
from core.org import JobFunction
from qms.capa import services
from qms.capa.forms import ActionForm, CapaEditForm, CapaForm
from qms.capa.models import (
    ACTION_KINDS,
    ACTION_STATUS_LABELS,
    SOURCE_TYPES,
    STATUS_LABELS,
    Capa,
    CapaAction,
)
from qms.documents.models import Document
from signatures import ceremony
from training.models import STATUS_LABELS as TRAINING_STATUS_LABELS

bp = Blueprint("capa", __name__, url_prefix="/capa", template_folder="../templates")

def _capa(capa_id: int) -> Capa:
    capa = db.session.get(Capa, capa_id)
    if capa is None:
        abort(404, description=f"There is no CAPA with id {capa_id}.")
    return capa


def _action(capa: Capa, action_id: int) -> CapaAction:
    action = db.session.get(CapaAction, action_id)
    if action is None or action.capa_id != capa.id:
        abort(404, description=f"{capa.audit_title()} has no action {action_id}.")
    return action


def _people() -> list[User]:
    return list(db.session.scalars(sa.select(User).where(User.active.is_(True)).order_by(User.full_name)))


def _owner_choices(form) -> None:
    form.owner_id.choices = choices((u.id, f"{u.full_name} ({u.username})") for u in _people())


def _action_choices(form: ActionForm) -> None:
    people = _people()
    form.owner_id.choices = choices((u.id, f"{u.full_name} ({u.username})") for u in people)
    form.user_ids.choices = choices((u.id, f"{u.full_name} ({u.username})") for u in people)
    documents = db.session.scalars(sa.select(Document).order_by(Document.number).limit(1000))
    form.document_ids.choices = choices((d.id, f"{d.number} — {d.title}") for d in documents)
    functions = db.session.scalars(sa.select(JobFunction).where(JobFunction.active.is_(True))
                                   .order_by(JobFunction.code))
    form.job_function_ids.choices = choices((j.id, f"{j.code} — {j.name}") for j in functions)


def _url(endpoint: str, **values) -> str | None:
    """The page of a linked record, or None while that record type has no page."""
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def _fail(form, exc: AttestError) -> int:
    db.session.rollback()
    if isinstance(exc, ValidationError):
        show_error(form, exc)
        return 422
    flash(exc.message, "danger")
    return exc.status


# --- register and record ---------------------------------------------------------------------------------------------


@bp.route("/")
@permission_required("quality.view")
def register():
    status = request.args.get("status") or None
    query = (request.args.get("q") or "").strip()[:100]
    overdue = request.args.get("overdue") == "1"
    stmt = sa.select(Capa).order_by(Capa.id.desc())
    if overdue:
        stmt = stmt.where(Capa.id.in_(services.overdue_capas()))
    if status in STATUS_LABELS:
        stmt = stmt.where(Capa.status == status)
    if query:
        like = f"%{query}%"
        stmt = stmt.where(sa.or_(Capa.number.ilike(like), Capa.title.ilike(like)))
    records = list(db.session.scalars(stmt.limit(500)))
    late = set(db.session.scalars(services.overdue_capas().where(Capa.id.in_([r.id for r in records]))))
    return render_template("qms/capa/register.html", records=records, status=status, query=query, overdue=overdue,
                           late=late, next_due=services.next_due([r.id for r in records]),
                           STATUS_LABELS=STATUS_LABELS, title="CAPA")


def _prefill_from_source(form) -> None:
    """"Raise a CAPA" from a deviation: /capa/new?source_type=deviation&source=DEV-2026-0001 fills in the source,
    a title and the problem statement from the deviation (the user reviews them before saving)."""
    from qms.deviations.models import Deviation

    if request.args.get("source_type") != "deviation":
        return
    number = (request.args.get("source") or "").strip().upper()[:32]
    deviation = db.session.scalar(sa.select(Deviation).where(Deviation.number == number)) if number else None
    if deviation is None:
        return
    form.source_type.data = "deviation"
    form.source_id.data = deviation.number
    form.title.data = f"CAPA for {deviation.number}: {deviation.title}"[:300]
    form.problem_statement.data = deviation.description


@bp.route("/new", methods=["GET", "POST"])
@permission_required("quality.manage")
def create():
    form = CapaForm()
    _owner_choices(form)
    if request.method == "GET":
        form.owner_id.data = current_user.id
        _prefill_from_source(form)
    status = 200
    if form.validate_on_submit():
        try:
            with transaction():
                capa = services.create_capa(
                    actor=current_user, title=form.title.data, source_type=form.source_type.data,
                    source_id=(form.source_id.data or "").strip() or None,
                    source_reference=form.source_reference.data, problem_statement=form.problem_statement.data,
                    root_cause=form.root_cause.data, owner_id=form.owner_id.data)
        except AttestError as exc:
            status = _fail(form, exc)
        else:
            flash(f"{capa.number} was raised in Draft. Plan its actions.", "success")
            return redirect(url_for("capa.show", capa_id=capa.id))
    elif form.errors:
        status = 422
    return render_template("qms/capa/capa_form.html", form=form, capa=None), status


@bp.route("/<int:capa_id>")
@permission_required("quality.view")
def show(capa_id: int):
    capa = _capa(capa_id)
    progress = services.progress([a.id for a in capa.actions])
    documents = {d.id: d for d in db.session.scalars(sa.select(Document).where(Document.id.in_(
        [link.document_id for a in capa.actions for link in a.documents])))}
    users = {u.id: u for u in db.session.scalars(sa.select(User).where(User.id.in_(
        [link.user_id for a in capa.actions for link in a.people])))}
    functions = {j.id: j for j in db.session.scalars(sa.select(JobFunction).where(JobFunction.id.in_(
        [link.job_function_id for a in capa.actions for link in a.job_functions])))}
    source = services.source_record(capa)
    source_url = None
    if source is not None:
        source_url = (_url("deviations.show", deviation_id=source.id) if capa.source_type == "deviation"
                      else _url("change_control.show", change_id=source.id))
    from qms.deviations.models import Deviation

    linked = [(d, _url("deviations.show", deviation_id=d.id))
              for d in db.session.scalars(sa.select(Deviation).where(Deviation.capa_id == capa.id)
                                          .order_by(Deviation.number))
              if not (capa.source_type == "deviation" and source is not None and d.id == source.id)]
    return render_template("qms/capa/record.html", capa=capa, source=source, source_url=source_url, linked=linked,
                           progress=progress, documents=documents, users=users, functions=functions,
                           signatures=services.signatures_of(capa), SOURCE_TYPES=SOURCE_TYPES,
                           ACTION_KINDS=ACTION_KINDS, ACTION_STATUS_LABELS=ACTION_STATUS_LABELS,
                           TRAINING_STATUS_LABELS=TRAINING_STATUS_LABELS, today=now_utc().date(),
                           title=f"{capa.number} — {capa.title}")


@bp.route("/<int:capa_id>/edit", methods=["GET", "POST"])
@permission_required("quality.manage")
def edit(capa_id: int):
    capa = _capa(capa_id)
    form = CapaEditForm(obj=capa)
    _owner_choices(form)
    if request.method == "GET":
        form.expected_version.data = str(capa.row_version)
    status = 200
    if form.validate_on_submit():
        try:
            with transaction(reason=form.reason.data):
                services.update_capa(capa, actor=current_user, expected_row_version=form.expected_version.data,
                                     title=form.title.data, source_reference=form.source_reference.data or "",
                                     problem_statement=form.problem_statement.data,
                                     root_cause=form.root_cause.data or "", owner_id=form.owner_id.data)
        except AttestError as exc:
            status = _fail(form, exc)
        else:
            flash(f"{capa.number} saved.", "success")
            return redirect(url_for("capa.show", capa_id=capa.id))
    elif form.errors:
        status = 422
    return render_template("qms/capa/capa_form.html", form=form, capa=capa), status


# --- actions ---------------------------------------------------------------------------------------------------------


def _action_input(form: ActionForm) -> services.ActionInput:
    return services.ActionInput(kind=form.kind.data, description=form.description.data, owner_id=form.owner_id.data,
                                due_on=form.due_on.data, retraining=bool(form.retraining.data),
                                document_ids=form.document_ids.data or [], user_ids=form.user_ids.data or [],
                                job_function_ids=form.job_function_ids.data or [])


@bp.route("/<int:capa_id>/actions/new", methods=["GET", "POST"], endpoint="new_action")
@bp.route("/<int:capa_id>/actions/<int:action_id>/edit", methods=["GET", "POST"], endpoint="edit_action")
@permission_required("quality.manage")
def action_form(capa_id: int, action_id: int | None = None):
    capa = _capa(capa_id)
    action = _action(capa, action_id) if action_id is not None else None
    form = ActionForm(obj=action)
    _action_choices(form)
    if request.method == "GET":
        form.expected_version.data = str(capa.row_version)
        if action is not None:
            form.document_ids.data = [link.document_id for link in action.documents]
            form.user_ids.data = [link.user_id for link in action.people]
            form.job_function_ids.data = [link.job_function_id for link in action.job_functions]
        else:
            form.owner_id.data = capa.owner_id
    status = 200
    if form.validate_on_submit():
        try:
            with transaction():
                if action is None:
                    services.add_action(capa, _action_input(form), actor=current_user,
                                        expected_row_version=form.expected_version.data)
                else:
                    services.edit_action(action, _action_input(form), actor=current_user,
                                         expected_row_version=form.expected_version.data)
        except AttestError as exc:
            status = _fail(form, exc)
        else:
            flash("Action saved.", "success")
            return redirect(url_for("capa.show", capa_id=capa.id))
    elif form.errors:
        status = 422
    return render_template("qms/capa/action_form.html", form=form, capa=capa, action=action), status


# --- the lifecycles' steps (signed and unsigned), from their declarations --------------------------------------------


def _capa_panel(capa: Capa, transition) -> dict:
    """Closing: the training this CAPA assigned that is still open (closing is refused until it is complete)."""
    return {"open_training": services.open_training(capa)}


def _action_panel(action: CapaAction, transition) -> dict:
    """Approving retraining: who will be assigned what."""
    return {"people": services.retraining_people(action),
            "documents": [db.session.get(Document, link.document_id) for link in action.documents]}


def _load_action(capa_id: int, action_id: int) -> CapaAction:
    return _action(_capa(capa_id), action_id)


ceremony.expose(bp, services.LIFECYCLE, rule="/<int:capa_id>", load=_capa, url_args=lambda capa: {"capa_id": capa.id},
                back=lambda capa: url_for("capa.show", capa_id=capa.id),
                panels={"close": "qms/capa/_sign_close.html"}, context=_capa_panel)
ceremony.expose(bp, services.ACTIONS, rule="/<int:capa_id>/actions/<int:action_id>", load=_load_action,
                url_args=lambda action: {"capa_id": action.capa_id, "action_id": action.id},
                back=lambda action: url_for("capa.show", capa_id=action.capa_id),
                panels={"approve-retraining": "qms/capa/_sign_retraining.html"}, context=_action_panel)
