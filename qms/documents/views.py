"""Document control pages: register, document and revision pages, signing, diff, controlled copies, manifests."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core import audit
from core.audit.views import record_history
from core.auth.access import permission_required
from core.auth.models import User, UserRole
from core.auth.permissions import ROLES
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices, show_error
from core.org import Department, JobFunction
from qms.documents import publish, release, services
from qms.documents.diff import side_by_side, summary
from qms.documents.forms import DocumentForm, DocumentSettingsForm, RevisionForm, RoutingForm
from qms.documents.models import (
    APPROVE,
    APPROVED,
    DOC_TYPES,
    DRAFT,
    EFFECTIVE,
    IN_REVIEW,
    RELEASE_POLICIES,
    REVIEW,
    STATUS_LABELS,
    Document,
    Revision,
)
from qms.documents.pdf import CopyInfo, SignatureLine, controlled_copy_markdown, controlled_copy_pdf
from qms.documents.rendering import render_markdown
from signatures import ceremony
from signatures import models as sig
from signatures import services as signing

bp = Blueprint("documents", __name__, url_prefix="/documents", template_folder="../templates")

def _document(document_id: int) -> Document:
    doc = db.session.get(Document, document_id)
    if doc is None:
        abort(404, description=f"There is no document with id {document_id}.")
    return doc


def _revision(document_id: int, revision_id: int) -> Revision:
    rev = db.session.get(Revision, revision_id)
    if rev is None or rev.document_id != document_id:
        abort(404, description=f"Document {document_id} has no revision with id {revision_id}.")
    return rev


def _users_with(permission: str) -> list[User]:
    roles = [code for code, role in ROLES.items() if permission in role.permissions]
    return list(db.session.scalars(
        sa.select(User).where(User.active.is_(True), User.id.in_(sa.select(UserRole.user_id)
                                                                    .where(UserRole.role.in_(roles))))
        .order_by(User.full_name)))



def _doc_choices(form) -> None:
    departments = db.session.scalars(sa.select(Department).order_by(Department.site_id, Department.code))
    functions = db.session.scalars(sa.select(JobFunction).where(JobFunction.active.is_(True))
                                   .order_by(JobFunction.code))
    form.department_id.choices = choices((d.id, f"{d.site.code} / {d.name}") for d in departments)
    form.owner_id.choices = choices((u.id, f"{u.full_name} ({u.username})") for u in _users_with("documents.author"))
    form.audience.choices = choices((j.id, f"{j.code} — {j.name}") for j in functions)


# --- register -------------------------------------------------------------------------------------------------------


@bp.route("/")
@permission_required("documents.view")
def register():
    q = (request.args.get("q") or "").strip()
    status = request.args.get("status", "")
    doc_type = request.args.get("type", "")
    department = request.args.get("department", "")
    owner = request.args.get("owner", "")
    latest = (sa.select(Revision.document_id, sa.func.max(Revision.id).label("rid"))
              .group_by(Revision.document_id).subquery())
    stmt = (sa.select(Document, Revision).outerjoin(latest, latest.c.document_id == Document.id)
            .outerjoin(Revision, Revision.id == latest.c.rid).order_by(Document.number))
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(sa.or_(sa.func.lower(Document.number).like(like), sa.func.lower(Document.title).like(like)))
    if status in STATUS_LABELS:  # documents having a revision in that state (e.g. effective 1.0 with a 1.1 draft)
        stmt = stmt.where(Document.id.in_(sa.select(Revision.document_id).where(Revision.status == status)))
    if doc_type in DOC_TYPES:
        stmt = stmt.where(Document.doc_type == doc_type)
    if department.isdigit():
        stmt = stmt.where(Document.department_id == int(department))
    if owner.isdigit():
        stmt = stmt.where(Document.owner_id == int(owner))
    rows = db.session.execute(stmt.limit(1000)).all()
    effective = dict(db.session.execute(
        sa.select(Revision.document_id, Revision.major * 1000 + Revision.minor)
        .where(Revision.status == EFFECTIVE)).all())
    departments = list(db.session.scalars(sa.select(Department).order_by(Department.site_id, Department.code)))
    owners = list(db.session.scalars(sa.select(User).where(User.id.in_(sa.select(Document.owner_id)))
                                     .order_by(User.full_name)))
    return render_template("qms/documents/register.html", rows=rows, effective=effective, q=q, status=status,
                           doc_type=doc_type, department=department, owner=owner, departments=departments,
                           owners=owners, statuses=STATUS_LABELS, types=DOC_TYPES)


@bp.route("/reviews-due")
@permission_required("documents.view")
def reviews_due():
    return render_template("qms/documents/reviews_due.html", revisions=services.reviews_due(), today=now_utc().date())


@bp.route("/new", methods=["GET", "POST"])
@permission_required("documents.author")
def create():
    form = DocumentForm()
    form.doc_type.choices = choices(DOC_TYPES.items())
    _doc_choices(form)
    if request.method == "GET":
        form.owner_id.data = current_user.id
    if form.validate_on_submit():
        try:
            with transaction():
                doc = services.create_document(
                    number=form.number.data, title=form.title.data, doc_type=form.doc_type.data,
                    department_id=form.department_id.data, owner_id=form.owner_id.data,
                    review_interval_months=form.review_interval_months.data,
                    training_window_days=form.training_window_days.data,
                    audience_job_function_ids=form.audience.data or [], actor=current_user)
        except ValidationError as exc:
            show_error(form, exc)
        except AttestError as exc:
            flash(exc.message, "danger")
        else:
            flash(f"{doc.number} was created. Start its first revision.", "success")
            return redirect(url_for("documents.new_revision", document_id=doc.id))
    return render_template("qms/documents/document_form.html", form=form, document=None), \
        422 if form.errors else 200


@bp.route("/<int:document_id>")
@permission_required("documents.view")
def show(document_id: int):
    doc = _document(document_id)
    revisions = list(reversed(doc.revisions))
    audience = list(db.session.scalars(sa.select(JobFunction).where(
        JobFunction.id.in_(publish.audience_ids(doc))).order_by(JobFunction.code)))
    return render_template("qms/documents/document.html", document=doc, revisions=revisions, audience=audience,
                           open_revision=services.open_revision(doc), effective=services.current_effective(doc),
                           history=record_history(Document, doc.id) if current_user.can("audit.view") else None,
                           types=DOC_TYPES)


@bp.route("/<int:document_id>/settings", methods=["GET", "POST"])
@permission_required("documents.author")
def settings(document_id: int):
    doc = _document(document_id)
    form = DocumentSettingsForm(obj=doc)
    _doc_choices(form)
    if request.method == "GET":
        form.audience.data = publish.audience_ids(doc)
    if form.validate_on_submit():
        try:
            with transaction(reason=form.reason.data):
                services.update_document_metadata(
                    doc, department_id=form.department_id.data, owner_id=form.owner_id.data,
                    review_interval_months=form.review_interval_months.data,
                    training_window_days=form.training_window_days.data,
                    audience_job_function_ids=form.audience.data or [], actor=current_user,
                    min_read_seconds=form.min_read_seconds.data or 0, release_policy=form.release_policy.data)
        except ValidationError as exc:
            show_error(form, exc)
        except AttestError as exc:
            flash(exc.message, "danger")
        else:
            flash("Document settings saved.", "success")
            return redirect(url_for("documents.show", document_id=doc.id))
    return render_template("qms/documents/settings.html", form=form, document=doc), 422 if form.errors else 200


# --- revisions ------------------------------------------------------------------------------------------------------


def _uploaded_pdf(form) -> tuple[bytes | None, str | None]:
    upload = form.content_pdf.data
    if upload is None or not getattr(upload, "filename", ""):
        return None, None
    limit = current_app.config.get("ATTEST_MAX_UPLOAD_MB", 20) * 1024 * 1024
    data = upload.read(limit + 1)
    return data, upload.filename


@bp.route("/<int:document_id>/revisions/new", methods=["GET", "POST"])
@permission_required("documents.author")
def new_revision(document_id: int):
    doc = _document(document_id)
    form = RevisionForm()
    latest = doc.revisions[-1] if doc.revisions else None
    if request.method == "GET" and latest is not None and latest.content_format == "markdown":
        form.content_markdown.data = latest.content_markdown
    if form.validate_on_submit():
        pdf_bytes, pdf_name = _uploaded_pdf(form)
        try:
            with transaction():
                rev = services.start_revision(
                    doc, author=current_user, major=form.kind.data == "major",
                    change_summary=form.change_summary.data, reason=form.reason.data,
                    content_markdown=None if pdf_bytes else form.content_markdown.data, pdf_bytes=pdf_bytes,
                    pdf_filename=pdf_name)
        except ValidationError as exc:
            show_error(form, exc)
        except AttestError as exc:
            flash(exc.message, "danger")
        else:
            flash(f"Draft revision {rev.label} created. Choose reviewers and approvers, then submit it.", "success")
            return redirect(url_for("documents.revision", document_id=doc.id, revision_id=rev.id))
    return render_template("qms/documents/revision_form.html", form=form, document=doc, revision=None), \
        422 if form.errors else 200


@bp.route("/<int:document_id>/revisions/<int:revision_id>/edit", methods=["GET", "POST"])
@permission_required("documents.author")
def edit_revision(document_id: int, revision_id: int):
    doc = _document(document_id)
    rev = _revision(document_id, revision_id)
    form = RevisionForm(obj=rev)
    form.kind.validators = []
    if request.method == "GET":
        form.expected_version.data = str(rev.row_version)
    if form.validate_on_submit():
        pdf_bytes, pdf_name = _uploaded_pdf(form)
        try:
            with transaction():
                services.update_draft(
                    rev, actor=current_user, expected_row_version=(form.expected_version.data or "").strip(),
                    change_summary=form.change_summary.data, reason=form.reason.data,
                    content_markdown=None if pdf_bytes else form.content_markdown.data, pdf_bytes=pdf_bytes,
                    pdf_filename=pdf_name)
        except ValidationError as exc:
            show_error(form, exc)
        except AttestError as exc:
            flash(exc.message, "danger")
            return render_template("qms/documents/revision_form.html", form=form, document=doc,
                                   revision=rev), exc.status
        else:
            flash(f"Draft {rev.label} saved.", "success")
            return redirect(url_for("documents.revision", document_id=doc.id, revision_id=rev.id))
    return render_template("qms/documents/revision_form.html", form=form, document=doc, revision=rev), \
        422 if form.errors else 200


def _signature_lines(rev: Revision) -> list[tuple[sig.Signature, str]]:
    """The revision's lifecycle signatures; read-and-understood signatures (possibly thousands) are counted apart."""
    return [(s, signing.status(s, rev))
            for s in signing.signatures_for(rev, exclude_meanings=(sig.READ_AND_UNDERSTOOD,))]


@bp.route("/<int:document_id>/revisions/<int:revision_id>")
@permission_required("documents.view")
def revision(document_id: int, revision_id: int):
    doc = _document(document_id)
    rev = _revision(document_id, revision_id)
    routing = RoutingForm()
    routing.reviewers.choices = choices((u.id, u.full_name) for u in _users_with("documents.review")
                                        if u.id != rev.author_id)
    routing.approvers.choices = choices((u.id, u.full_name) for u in _users_with("documents.approve")
                                        if u.id != rev.author_id)
    routing.reviewers.data = [r.user_id for r in rev.routes if r.step == REVIEW]
    routing.approvers.data = [r.user_id for r in rev.routes if r.step == APPROVE]
    previous = [r for r in doc.revisions if r.id < rev.id and r.content_format == "markdown"]
    return render_template(
        "qms/documents/revision.html", document=doc, revision=rev, routing=routing,
        held=release.release_held(rev), untrained=release.untrained_assignees(rev) if rev.status == APPROVED else [],
        RELEASE_POLICIES=RELEASE_POLICIES,
        html=render_markdown(rev.content_markdown) if rev.content_format == "markdown" else None,
        signatures=_signature_lines(rev), outstanding=services.outstanding(rev),
        trained=signing.count_for(rev, sig.READ_AND_UNDERSTOOD),
        history=record_history(Revision, rev.id) if current_user.can("audit.view") else None,
        previous=previous[-1] if previous else None, DRAFT=DRAFT, IN_REVIEW=IN_REVIEW, EFFECTIVE=EFFECTIVE)


@bp.route("/<int:document_id>/revisions/<int:revision_id>/routing", methods=["POST"])
@permission_required("documents.author")
def set_routing(document_id: int, revision_id: int):
    rev = _revision(document_id, revision_id)
    form = RoutingForm()
    form.reviewers.choices = choices((u.id, u.full_name) for u in _users_with("documents.review"))
    form.approvers.choices = choices((u.id, u.full_name) for u in _users_with("documents.approve"))
    if not form.validate_on_submit():
        for field in (form.reviewers, form.approvers):
            for message in field.errors:
                flash(f"{field.label.text}: {message}", "danger")
        return redirect(url_for("documents.revision", document_id=document_id, revision_id=rev.id)), 303
    try:
        with transaction():
            services.set_routing(rev, actor=current_user, reviewer_ids=form.reviewers.data or [],
                                 approver_ids=form.approvers.data or [])
    except AttestError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("documents.revision", document_id=document_id, revision_id=rev.id)), 303
    flash("Routing saved.", "success")
    return redirect(url_for("documents.revision", document_id=document_id, revision_id=rev.id))


def _sign_panel(rev: Revision, transition) -> dict:
    """What the approval's and the release override's signing pages show besides the revision: the training the
    final approval assigns, or the people not yet trained whom the override names."""
    if transition.action == "approve":
        from training import engine as training_engine

        return {"training_impact": training_engine.impact(publish.retraining_job_functions(rev))}
    return {"untrained": release.untrained_assignees(rev)}


ceremony.expose(bp, services.LIFECYCLE, rule="/<int:document_id>/revisions/<int:revision_id>", load=_revision,
                url_args=lambda rev: {"document_id": rev.document_id, "revision_id": rev.id},
                back=lambda rev: url_for("documents.revision", document_id=rev.document_id, revision_id=rev.id),
                panels={"approve": "qms/documents/_sign_approve.html",
                        "release-override": "qms/documents/_sign_release_override.html"},
                context=_sign_panel)


# --- content, copies, manifests, diff -----------------------------------------------------------------------------


@bp.route("/<int:document_id>/revisions/<int:revision_id>/content.pdf")
@permission_required("documents.view")
def content_pdf(document_id: int, revision_id: int):
    rev = _revision(document_id, revision_id)
    if rev.content_format != "pdf":
        abort(404, description="This revision is written in Markdown; use the controlled copy.")
    return Response(rev.content_pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f"inline; filename={rev.document.number}-{rev.label}.pdf"})


@bp.route("/<int:document_id>/revisions/<int:revision_id>/content")
@permission_required("documents.view")
def content(document_id: int, revision_id: int):
    """The revision's content as an HTML fragment: the sanitised rendering of its Markdown, or for an uploaded PDF the
    file embedded with a link to open it (the training item's content link: the read-and-sign page shows it)."""
    rev = _revision(document_id, revision_id)
    if rev.content_format != "markdown":
        return Response(render_template("qms/documents/_pdf_content.html", document=rev.document, revision=rev),
                        mimetype="text/html")
    return Response(render_markdown(rev.content_markdown or ""), mimetype="text/html")


@bp.route("/<int:document_id>/revisions/<int:revision_id>/controlled-copy.pdf")
@permission_required("documents.view")
def controlled_copy(document_id: int, revision_id: int):
    rev = _revision(document_id, revision_id)
    doc = rev.document
    printed_at = now_utc()
    info = CopyInfo(number=doc.number, title=doc.title, revision=rev.label, status=rev.status_label,
                    effective_on=rev.effective_on, printed_by=current_user.full_name, printed_at=printed_at,
                    content_sha256=rev.computed_content_sha256())
    lines = [SignatureLine(s.printed_name, s.meaning, s.signed_at, s.auth_method, state, s.comment)
             for s, state in _signature_lines(rev)]
    if rev.content_format == "pdf":
        data = controlled_copy_pdf(info, rev.content_pdf or b"", lines)
    else:
        data = controlled_copy_markdown(info, render_markdown(rev.content_markdown or ""), lines)
    with transaction():
        audit.record_event("document.printed", document=doc.number, revision=rev.label,
                           printed_at=printed_at.isoformat())
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f"inline; filename={doc.number}-{rev.label}-controlled.pdf"})


@bp.route("/<int:document_id>/revisions/<int:revision_id>/manifest.xml")
@permission_required("documents.view")
def manifest(document_id: int, revision_id: int):
    from signatures.manifest import build_manifest

    rev = _revision(document_id, revision_id)
    return Response(build_manifest(rev), mimetype="application/xml",
                    headers={"Content-Disposition": f"attachment; filename={rev.document.number}-{rev.label}"
                                                    f"-signatures.xml"})


@bp.route("/<int:document_id>/diff")
@permission_required("documents.view")
def diff(document_id: int):
    doc = _document(document_id)
    markdown_revs = [r for r in doc.revisions if r.content_format == "markdown"]
    by_id = {r.id: r for r in markdown_revs}
    try:
        old = by_id[int(request.args.get("from", ""))]
        new = by_id[int(request.args.get("to", ""))]
    except (KeyError, ValueError):
        if len(markdown_revs) < 2:
            return render_template("qms/documents/diff.html", document=doc, old=None, new=None, rows=[],
                                   counts={}, revisions=markdown_revs)
        old, new = markdown_revs[-2], markdown_revs[-1]
    rows = side_by_side(old.content_markdown or "", new.content_markdown or "")
    return render_template("qms/documents/diff.html", document=doc, old=old, new=new, rows=rows,
                           counts=summary(rows), revisions=markdown_revs)
