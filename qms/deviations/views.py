"""Deviations pages: the register (search, filters, overdue), reporting, the record with its training adequacy panel,
the edit forms; the lifecycle's steps come from its declaration through the shared signing view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core.audit.views import record_history
from core.auth.access import permission_required
from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices, show_error
from core.org import Department, Site
from core.web import user_zone
from qms.deviations import services
from qms.deviations.forms import ClassifyForm, DeviationForm, InvestigationForm, LinksForm
from qms.deviations.models import (
    CLASSIFICATIONS,
    INVESTIGATION,
    OPEN,
    PENDING_APPROVAL,
    ROOT_CAUSE_CATEGORIES,
    STATUS_LABELS,
    Deviation,
)
from qms.documents.models import Document
from signatures import ceremony
from signatures import services as signing

bp = Blueprint("deviations", __name__, url_prefix="/deviations", template_folder="../templates")

OVERDUE_DAYS = 30


def _deviation(deviation_id: int) -> Deviation:
    deviation = db.session.get(Deviation, deviation_id)
    if deviation is None:
        abort(404, description=f"There is no deviation with id {deviation_id}.")
    return deviation


def _to_utc(value: datetime | None, field: str) -> datetime | None:
    """A datetime-local input is in the viewer's time zone."""
    if value is None or value.tzinfo is not None:
        return value
    try:
        return value.replace(tzinfo=user_zone()).astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 00:00 east of Greenwich lies before year 1 in UTC
        raise ValidationError(field, "This moment lies outside the years 1 to 9999 in UTC.") from None


def _to_local(value: datetime | None) -> datetime | None:
    return value.astimezone(user_zone()).replace(tzinfo=None) if value is not None else None


def _people_choices() -> list:
    return choices((u.id, f"{u.full_name} ({u.username})") for u in db.session.scalars(
        sa.select(User).where(User.active.is_(True)).order_by(User.full_name)))


def _document_choices() -> list:
    return choices((d.id, f"{d.number} — {d.title}") for d in db.session.scalars(
        sa.select(Document).order_by(Document.number)))


def _report_choices(form: DeviationForm) -> None:
    form.site_id.choices = choices([("", "—")] + [(s.id, f"{s.code} — {s.name}") for s in db.session.scalars(
        sa.select(Site).order_by(Site.code))])
    form.department_id.choices = choices([("", "—")] + [(d.id, f"{d.site.code} / {d.name}") for d in db.session.scalars(
        sa.select(Department).order_by(Department.site_id, Department.code))])
    form.owner_id.choices = choices([("", "Me")] + [(u.id, f"{u.full_name} ({u.username})") for u in db.session.scalars(
        sa.select(User).where(User.active.is_(True)).order_by(User.full_name)) if u.can("quality.manage")])
    form.person_ids.choices = _people_choices()
    form.document_ids.choices = _document_choices()


def _render_form(template_title: str, form, deviation: Deviation | None, fields: list[str], button: str,
                 status: int | None = None):
    return render_template("qms/deviations/form.html", form=form, deviation=deviation, fields=fields,
                           button=button, title=template_title), status or (422 if form.errors else 200)


def _capa_url(deviation: Deviation) -> str | None:
    """The CAPA's record page when the CAPA pages have one, else its register filtered by its number."""
    if deviation.capa is None:
        return None
    if "capa.show" in current_app.view_functions:
        return url_for("capa.show", capa_id=deviation.capa.id)
    return url_for("capa.register", q=deviation.capa.number)


def _done(deviation: Deviation, message: str):
    flash(message, "success")
    return redirect(url_for("deviations.show", deviation_id=deviation.id))


def _attempt(form, call) -> int | None:
    """Run `call` in one unit of work; None on success, else the status of the refusal, shown under its field (or
    as a message). A refusal writes nothing."""
    try:
        with transaction():
            call()
    except ValidationError as exc:
        show_error(form, exc)
        return 422
    except AttestError as exc:
        flash(exc.message, "danger")
        return exc.status
    return None


# --- register -------------------------------------------------------------------------------------------------------


@bp.route("/")
@permission_required("quality.view")
def register():
    status = request.args.get("status") or None
    overdue = request.args.get("overdue") == "1"
    query = (request.args.get("q") or "").strip()[:100]
    stmt = sa.select(Deviation).order_by(Deviation.id.desc())
    if status in STATUS_LABELS:
        stmt = stmt.where(Deviation.status == status)
    if overdue:
        stmt = stmt.where(Deviation.status.in_(services.ACTIVE),
                          Deviation.discovered_at < now_utc() - timedelta(days=OVERDUE_DAYS))
    if query:
        like = f"%{query}%"
        stmt = stmt.where(sa.or_(Deviation.number.ilike(like), Deviation.title.ilike(like)))
    records = list(db.session.scalars(stmt.limit(500)))
    now = now_utc()
    late = {r.id for r in records if services.is_overdue(r, OVERDUE_DAYS, now)}
    return render_template("qms/deviations/register.html", records=records, status=status, query=query,
                           overdue=overdue, late=late, overdue_days=OVERDUE_DAYS, STATUS_LABELS=STATUS_LABELS,
                           title="Deviations")


# --- report and record ----------------------------------------------------------------------------------------------


@bp.route("/new", methods=["GET", "POST"])
@permission_required("quality.manage")
def report():
    form = DeviationForm()
    _report_choices(form)
    created: list[Deviation] = []
    status = None
    if form.validate_on_submit():
        def call():
            created.append(services.report_deviation(
                actor=current_user, title=form.title.data, occurred_at=_to_utc(form.occurred_at.data, "occurred_at"),
                discovered_at=_to_utc(form.discovered_at.data, "discovered_at"), site_id=form.site_id.data,
                department_id=form.department_id.data, area=form.area.data, description=form.description.data,
                immediate_actions=form.immediate_actions.data, owner_id=form.owner_id.data,
                person_ids=form.person_ids.data or [], document_ids=form.document_ids.data or []))

        status = _attempt(form, call)
        if status is None:
            return _done(created[0], f"Deviation {created[0].number} was reported.")
    fields = ["title", "occurred_at", "discovered_at", "site_id", "department_id", "area", "description",
              "immediate_actions", "owner_id", "person_ids", "document_ids"]
    return _render_form("Report a deviation", form, None, fields, "Report", status=status)


@bp.route("/<int:deviation_id>")
@permission_required("quality.view")
def show(deviation_id: int):
    deviation = _deviation(deviation_id)
    return render_template(
        "qms/deviations/record.html", deviation=deviation, people=services.involved(deviation),
        documents=services.linked_documents(deviation), adequacy=services.training_adequacy(deviation),
        signatures=[(s, m, signing.status(s, deviation)) for s, m in services.signature_lines(deviation)],
        history=record_history(Deviation, deviation.id) if current_user.can("audit.view") else None,
        capa_url=_capa_url(deviation), overdue=services.is_overdue(deviation, OVERDUE_DAYS),
        site=db.session.get(Site, deviation.site_id),
        department=db.session.get(Department, deviation.department_id), CLASSIFICATIONS=CLASSIFICATIONS,
        ROOT_CAUSE_CATEGORIES=ROOT_CAUSE_CATEGORIES, EDITABLE=services.EDITABLE, OPEN=OPEN,
        INVESTIGATION=INVESTIGATION, PENDING_APPROVAL=PENDING_APPROVAL, ACTIVE=services.ACTIVE)


@bp.route("/<int:deviation_id>/edit", methods=["GET", "POST"])
@permission_required("quality.manage")
def edit(deviation_id: int):
    deviation = _deviation(deviation_id)
    form = DeviationForm(obj=deviation if request.method == "GET" else None)
    _report_choices(form)
    if request.method == "GET":
        form.occurred_at.data = _to_local(deviation.occurred_at)
        form.discovered_at.data = _to_local(deviation.discovered_at)
        form.expected_version.data = str(deviation.row_version)
    status = None
    if form.validate_on_submit():
        def call():
            services.update_deviation(
                deviation, actor=current_user, expected_row_version=form.expected_version.data,
                reason=form.reason.data, title=form.title.data,
                occurred_at=_to_utc(form.occurred_at.data, "occurred_at"),
                discovered_at=_to_utc(form.discovered_at.data, "discovered_at"), site_id=form.site_id.data,
                department_id=form.department_id.data, area=form.area.data, description=form.description.data,
                immediate_actions=form.immediate_actions.data)

        status = _attempt(form, call)
        if status is None:
            return _done(deviation, f"Deviation {deviation.number} saved.")
    fields = ["title", "occurred_at", "discovered_at", "site_id", "department_id", "area", "description",
              "immediate_actions", "reason"]
    return _render_form(f"Edit deviation {deviation.number}", form, deviation, fields, "Save", status=status)


@bp.route("/<int:deviation_id>/links", methods=["GET", "POST"])
@permission_required("quality.manage")
def links(deviation_id: int):
    deviation = _deviation(deviation_id)
    form = LinksForm()
    form.person_ids.choices = _people_choices()
    form.document_ids.choices = _document_choices()
    if request.method == "GET":
        form.person_ids.data = [p.user_id for p in deviation.people]
        form.document_ids.data = [d.document_id for d in deviation.documents]
        form.capa_number.data = deviation.capa.number if deviation.capa else ""
        form.expected_version.data = str(deviation.row_version)
    status = None
    if form.validate_on_submit():
        def call():
            expected = form.expected_version.data
            services.set_people(deviation, actor=current_user, user_ids=form.person_ids.data or [],
                                reason=form.reason.data, expected_row_version=expected)
            services.set_documents(deviation, actor=current_user, document_ids=form.document_ids.data or [],
                                   reason=form.reason.data, expected_row_version=expected)
            current = deviation.capa.number if deviation.capa else ""
            if (form.capa_number.data or "").strip().upper() != current.upper():
                services.link_capa(deviation, actor=current_user, capa_number=form.capa_number.data,
                                   reason=form.reason.data, expected_row_version=expected)

        status = _attempt(form, call)
        if status is None:
            return _done(deviation, f"People, procedures and CAPA of {deviation.number} saved.")
    return _render_form(f"People, procedures and CAPA of {deviation.number}", form, deviation,
                        ["person_ids", "document_ids", "capa_number", "reason"], "Save", status=status)


@bp.route("/<int:deviation_id>/classify", methods=["GET", "POST"])
@permission_required("quality.manage")
def classify(deviation_id: int):
    deviation = _deviation(deviation_id)
    form = ClassifyForm(obj=deviation if request.method == "GET" else None)
    form.classification.choices = choices([("", "—"), *CLASSIFICATIONS.items()])
    if request.method == "GET":
        form.expected_version.data = str(deviation.row_version)
    status = None
    if form.validate_on_submit():
        def call():
            services.classify(deviation, actor=current_user, classification=form.classification.data,
                              justification=form.classification_justification.data, reason=form.reason.data,
                              expected_row_version=form.expected_version.data)

        status = _attempt(form, call)
        if status is None:
            return _done(deviation, f"Deviation {deviation.number} classified as "
                                    f"{CLASSIFICATIONS[deviation.classification]}.")
    return _render_form(f"Classify deviation {deviation.number}", form, deviation,
                        ["classification", "classification_justification", "reason"], "Save", status=status)


@bp.route("/<int:deviation_id>/investigation", methods=["GET", "POST"])
@permission_required("quality.manage")
def investigation(deviation_id: int):
    deviation = _deviation(deviation_id)
    form = InvestigationForm(obj=deviation if request.method == "GET" else None)
    form.root_cause_category.choices = choices([("", "—"), *ROOT_CAUSE_CATEGORIES.items()])
    if request.method == "GET":
        form.expected_version.data = str(deviation.row_version)
    status = None
    if form.validate_on_submit():
        def call():
            services.record_investigation(
                deviation, actor=current_user, investigation=form.investigation.data, root_cause=form.root_cause.data,
                root_cause_category=form.root_cause_category.data, reason=form.reason.data,
                expected_row_version=form.expected_version.data)

        status = _attempt(form, call)
        if status is None:
            return _done(deviation, f"Investigation of {deviation.number} saved.")
    return _render_form(f"Investigation of deviation {deviation.number}", form, deviation,
                        ["investigation", "root_cause", "root_cause_category", "reason"], "Save", status=status)


# --- the lifecycle's steps (signed and unsigned), from its declaration ------------------------------------------------

ceremony.expose(bp, services.LIFECYCLE, rule="/<int:deviation_id>", load=_deviation,
                url_args=lambda deviation: {"deviation_id": deviation.id},
                back=lambda deviation: url_for("deviations.show", deviation_id=deviation.id))
