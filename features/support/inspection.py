"""Helpers the protocol steps share (not steps themselves): reading pages and audit data as an inspector would, and
changing data behind the application's back as a database administrator could."""

from __future__ import annotations

import html
import re
from typing import Any

import sqlalchemy as sa

from core.db import db

TAG_RE = re.compile(r"<[^>]+>")
SHIPPED_PACKAGES = ("core", "signatures", "lms", "training", "qms", "validation")


def text_of(response: Any) -> str:
    """A page's text as a person reads it: tags removed, entities decoded, white space folded."""
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def scalar_count(model: type, *where: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def newest(model: type, *where: Any) -> Any:
    db.session.expire_all()
    return db.session.scalars(sa.select(model).where(*where).order_by(model.id.desc())).first()


def short(digest: str) -> str:
    return f"{digest[:12]}…"


def direct_sql(sql: str, **params: Any) -> None:
    """A change made behind the application's back (e.g. a DBA's UPDATE): no ORM, no audit trail."""
    db.session.rollback()  # end the test session's read snapshot so it sees the change afterwards
    with db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)
    db.session.expire_all()


def as_application(statements: list[str]) -> dict[str, str]:
    """Run each statement on its own connection with the application's database account, as someone with its
    credentials would: statement -> "accepted" or the database's refusal."""
    db.session.rollback()
    outcomes = {}
    for sql in statements:
        try:
            with db.engine.begin() as conn:
                conn.exec_driver_sql(sql)
            outcomes[sql] = "accepted"
        except sa.exc.DBAPIError as exc:
            outcomes[sql] = str(exc.orig).splitlines()[0]
    return outcomes
