"""Change control pages: the register (search, filters), the record and its lifecycle."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from core.auth.access import permission_required
from core.db import db
from qms.change_control.models import STATUS_LABELS, ChangeControl

bp = Blueprint("change_control", __name__, url_prefix="/change-control", template_folder="../templates")


@bp.route("/")
@permission_required("quality.view")
def register():
    status = request.args.get("status") or None
    query = (request.args.get("q") or "").strip()[:100]
    stmt = sa.select(ChangeControl).order_by(ChangeControl.id.desc())
    if status in STATUS_LABELS:
        stmt = stmt.where(ChangeControl.status == status)
    if query:
        like = f"%{query}%"
        stmt = stmt.where(sa.or_(ChangeControl.number.ilike(like), ChangeControl.title.ilike(like)))
    records = list(db.session.scalars(stmt.limit(500)))
    return render_template("qms/change_control/register.html", records=records, status=status, query=query,
                           STATUS_LABELS=STATUS_LABELS, title="Change control")
