"""CAPA pages: the register (search, filters), the record and its lifecycle."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from core.auth.access import permission_required
from core.db import db
from qms.capa.models import STATUS_LABELS, Capa

bp = Blueprint("capa", __name__, url_prefix="/capa", template_folder="../templates")


@bp.route("/")
@permission_required("quality.view")
def register():
    status = request.args.get("status") or None
    query = (request.args.get("q") or "").strip()[:100]
    stmt = sa.select(Capa).order_by(Capa.id.desc())
    if status in STATUS_LABELS:
        stmt = stmt.where(Capa.status == status)
    if query:
        like = f"%{query}%"
        stmt = stmt.where(sa.or_(Capa.number.ilike(like), Capa.title.ilike(like)))
    records = list(db.session.scalars(stmt.limit(500)))
    return render_template("qms/capa/register.html", records=records, status=status, query=query,
                           STATUS_LABELS=STATUS_LABELS, title="CAPA")
