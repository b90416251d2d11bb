"""My training: the trainee's read-and-sign pages (list, the exact revision to read, the signing ceremony).

The pure service is training.read_and_sign (it takes ids and a Signable); this web layer lives in qms because it shows
a revision's content. Only the assignee can see an assignment: anyone else gets 404, so ids cannot be probed.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core.auth.access import permission_required
from core.clock import now_utc
from core.db import db, transaction
from core.forms import choices
from qms.documents.models import OBSOLETE, Revision
from qms.documents.rendering import render_markdown
from signatures import ceremony
from signatures import models as sig
from signatures import services as signing
from signatures.forms import SignForm
from training import read_and_sign as service
from training.models import OPEN, TrainingAssignment

bp = Blueprint("read_and_sign", __name__, url_prefix="/my-training", template_folder="templates")

PERMISSION = "training.view_own"


def _own_assignment(assignment_id: int) -> tuple[TrainingAssignment, Revision]:
    assignment = db.session.get(TrainingAssignment, assignment_id)
    if assignment is None or assignment.user_id != current_user.id:
        abort(404, description=f"You have no training assignment with id {assignment_id}.")
    revision = db.session.get(Revision, assignment.revision_id)
    if revision is None:  # pragma: no cover - foreign key
        abort(404)
    return assignment, revision


@bp.route("/")
@permission_required(PERMISSION)
def index():
    open_rows, done = service.my_assignments(current_user.id)
    revisions = {r.id: r for r in db.session.scalars(
        sa.select(Revision).where(Revision.id.in_([a.revision_id for a in open_rows + done])))}
    signatures = {s.id: s for s in db.session.scalars(
        sa.select(sig.Signature).where(sig.Signature.id.in_([a.signature_id for a in done if a.signature_id])))}
    today = now_utc().date()
    return render_template("qms/read_and_sign/index.html", open_rows=open_rows, done=done, revisions=revisions,
                           signatures=signatures, overdue={a.id for a in open_rows if service.is_overdue(a, today)})


@bp.route("/<int:assignment_id>")
@permission_required(PERMISSION)
def show(assignment_id: int):
    assignment, revision = _own_assignment(assignment_id)
    if assignment.status == OPEN and assignment.opened_at is None:
        with transaction():
            service.mark_opened(assignment, current_user._get_current_object())
    signature = db.session.get(sig.Signature, assignment.signature_id) if assignment.signature_id else None
    html = render_markdown(revision.content_markdown or "") if revision.content_format == "markdown" else None
    return render_template("qms/read_and_sign/show.html", assignment=assignment, revision=revision,
                           document=revision.document, html=html, signature=signature, OPEN=OPEN,
                           overdue=service.is_overdue(assignment))


@bp.route("/<int:assignment_id>/sign", methods=["GET", "POST"])
@permission_required(PERMISSION)
def sign(assignment_id: int):
    """The signing ceremony: authenticate in its own unit of work (failures are audited and count toward lockout),
    then complete the assignment in a second."""
    assignment, revision = _own_assignment(assignment_id)
    meaning = sig.READ_AND_UNDERSTOOD
    if assignment.status != OPEN:
        flash("This training is already closed.", "info")
        return redirect(url_for("read_and_sign.show", assignment_id=assignment.id))
    form = SignForm()
    form.meaning.choices = choices([(meaning, meaning)])
    if request.method == "GET":
        form.expected_version.data = str(revision.concurrency_token)
        form.meaning.data = meaning
    status = 200
    if form.validate_on_submit():
        def act(user, proof):
            service.complete(assignment, user=user, proof=proof, record=revision,
                             expected_version=(form.expected_version.data or "").strip() or None,
                             min_read_seconds=revision.document.min_read_seconds,
                             retired=revision.status == OBSOLETE)

        outcome = ceremony.perform(form, act)
        if outcome.response is not None:
            return outcome.response
        if outcome.ok:
            flash(f"Signed: {meaning}. Training on {revision.document.number} revision {revision.label} is "
                  f"complete.", "success")
            return redirect(url_for("read_and_sign.index"))
        status = outcome.status
    elif form.errors:
        status = 422
    return render_template("qms/read_and_sign/sign.html", form=form, assignment=assignment, revision=revision,
                           document=revision.document, meaning=meaning, declaration=signing.DECLARATION,
                           content_hash=signing.content_hash(revision),
                           totp=current_user.security.totp_enrolled), status
