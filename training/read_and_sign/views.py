"""My training: the trainee's read-and-sign pages (list, the exact item to read, the signing ceremony).

The page shows the item's content through the item's own link (`TrainingItem.content_url`), which the owning package
provides: an HTML content link is included in the page (the owner's view answers it, with its own permission check),
any other content (a PDF) is linked. Training never imports the owner. Only the assignee can see an assignment:
anyone else gets 404, so ids cannot be probed.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask_login import current_user
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from core.auth.access import permission_required
from core.clock import now_utc
from core.db import db, transaction
from signatures import ceremony
from signatures import models as sig
from training.models import OPEN, TrainingAssignment, TrainingItem
from training.read_and_sign import services as service

bp = Blueprint("read_and_sign", __name__, url_prefix="/my-training", template_folder="../templates")

PERMISSION = "training.view_own"
HTML = "text/html"


def _own_assignment(assignment_id: int) -> tuple[TrainingAssignment, TrainingItem]:
    assignment = db.session.get(TrainingAssignment, assignment_id)
    if assignment is None or assignment.user_id != current_user.id:
        abort(404, description=f"You have no training assignment with id {assignment_id}.")
    return assignment, db.session.get(TrainingItem, assignment.item_id)


def _items(assignments: list[TrainingAssignment]) -> dict[int, TrainingItem]:
    ids = {a.item_id for a in assignments}
    if not ids:
        return {}
    return {i.id: i for i in db.session.scalars(sa.select(TrainingItem).where(TrainingItem.id.in_(ids))
                                                .options(sa.orm.selectinload(TrainingItem.subject)))}


def embedded_content(item: TrainingItem) -> Markup | None:
    """The item's HTML content, as its owner's page for `content_url` renders it for the signed-in person (None when
    the content is not HTML, e.g. a PDF, which the page links instead). The owner's view runs with its own
    permission check; a refusal is shown as such, never as the content."""
    if item.content_type != HTML:
        return None
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, values = adapter.match(item.content_url, method="GET")
        response = current_app.make_response(current_app.view_functions[endpoint](**values))
    except HTTPException as exc:
        return Markup('<p class="text-danger">The content of {} cannot be shown here: {}</p>').format(
            item.title, exc.description or exc.name)
    return Markup(response.get_data(as_text=True))


@bp.route("/")
@permission_required(PERMISSION)
def index():
    open_rows, done = service.my_assignments(current_user.id)
    signatures = {s.id: s for s in db.session.scalars(
        sa.select(sig.Signature).where(sig.Signature.id.in_([a.signature_id for a in done if a.signature_id])))}
    today = now_utc().date()
    return render_template("training/read_and_sign/index.html", open_rows=open_rows, done=done,
                           items=_items(open_rows + done), signatures=signatures,
                           overdue={a.id for a in open_rows if service.is_overdue(a, today)})


@bp.route("/<int:assignment_id>")
@permission_required(PERMISSION)
def show(assignment_id: int):
    assignment, item = _own_assignment(assignment_id)
    if assignment.status == OPEN and assignment.opened_at is None:
        with transaction():
            service.mark_opened(assignment, current_user._get_current_object())
    signature = db.session.get(sig.Signature, assignment.signature_id) if assignment.signature_id else None
    return render_template("training/read_and_sign/show.html", assignment=assignment, item=item,
                           subject=item.subject, html=embedded_content(item), signature=signature, OPEN=OPEN,
                           overdue=service.is_overdue(assignment))


def _load_own(assignment_id: int) -> TrainingAssignment:
    assignment, _item = _own_assignment(assignment_id)
    return assignment


def _panel(assignment: TrainingAssignment, _transition) -> dict:
    return {"assignment": assignment}


# the signing page: the declared "sign" transition (training.read_and_sign.services.LIFECYCLE) on the one signing view;
# authentication in its own unit of work (failures are audited and count toward lockout), then the completion
ceremony.expose(bp, service.LIFECYCLE, rule="/<int:assignment_id>", load=_load_own,
                url_args=lambda assignment: {"assignment_id": assignment.id},
                back=lambda assignment: url_for("read_and_sign.index"),
                panels={"sign": "training/read_and_sign/_sign_reading.html"}, context=_panel)
