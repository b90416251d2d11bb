"""Personal API tokens: every person lists, creates and revokes their own; administrators see and revoke anyone's.

The secret is on the page that answers the creating request and nowhere else: it is neither stored (only its SHA-256)
nor put in the session or a redirect. Another person's token is a 404 to anyone but an administrator, so token ids
cannot be probed. An administrator revoking someone else's token gives a reason for change, as for every other action
on another person's account.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, StringField
from wtforms.validators import DataRequired, Length, Optional

from core.auth import tokens
from core.auth.access import AUTHENTICATED, permission_required
from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError, ValidationError

bp = Blueprint("api_tokens", __name__, url_prefix="/account/api-tokens", template_folder="templates")

ADMIN = "users.manage"
LIST_LIMIT = 500


class TokenForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Name is required."),
                                           Length(max=100, message="Name is at most 100 characters.")])
    expires_on = DateField("Expires on", validators=[Optional()])


class RevokeForm(FlaskForm):
    reason = StringField("Reason for change", validators=[Optional(), Length(max=1000)])


def _people(ids: set[int]) -> dict[int, User]:
    ids = {i for i in ids if i is not None}
    return {u.id: u for u in db.session.scalars(sa.select(User).where(User.id.in_(ids)))} if ids else {}


def _to_confirm(rows: list[tokens.ApiToken]) -> tokens.ApiToken | None:
    wanted = request.args.get("revoke", type=int)
    return next((t for t in rows if t.id == wanted and t.revoked_at is None), None)


@bp.route("/", methods=["GET", "POST"])
@permission_required(AUTHENTICATED)
def index():
    user = current_user._get_current_object()
    form = TokenForm()
    if form.validate_on_submit():
        try:
            with transaction():
                token, secret = tokens.create(user, name=form.name.data, expires_on=form.expires_on.data)
        except ValidationError as exc:
            getattr(form, exc.field, form.name).errors.append(exc.message)
        else:
            return render_template("core/tokens/created.html", token=token, secret=secret)
    rows = tokens.tokens_of(user.id)
    return render_template("core/tokens/index.html", form=form, tokens=rows, confirm=_to_confirm(rows),
                           people=_people({t.revoked_by_id for t in rows}), revoke_form=RevokeForm()), \
        422 if form.errors else 200


@bp.route("/all")
@permission_required(ADMIN)
def all_tokens():
    username = (request.args.get("user") or "").strip().lower()
    state = request.args.get("state", "active")
    stmt = (sa.select(tokens.ApiToken).join(User, User.id == tokens.ApiToken.user_id)
            .order_by(tokens.ApiToken.created_at.desc(), tokens.ApiToken.id.desc()))
    if username:
        stmt = stmt.where(User.username == username)
    if state == "active":
        stmt = stmt.where(tokens.ApiToken.revoked_at.is_(None), sa.or_(
            tokens.ApiToken.expires_on.is_(None), tokens.ApiToken.expires_on > now_utc().date()))
    rows = list(db.session.scalars(stmt.limit(LIST_LIMIT)))
    return render_template("core/tokens/all.html", tokens=rows, username=username, state=state,
                           confirm=_to_confirm(rows), revoke_form=RevokeForm(), limit=LIST_LIMIT,
                           people=_people({t.revoked_by_id for t in rows} | {t.user_id for t in rows}))


@bp.route("/<int:token_id>/revoke", methods=["POST"])
@permission_required(AUTHENTICATED)
def revoke(token_id: int):
    user = current_user._get_current_object()
    token = db.session.get(tokens.ApiToken, token_id)
    if token is None or (token.user_id != user.id and not user.can(ADMIN)):
        abort(404, description=f"You have no API token with id {token_id}.")
    back = url_for("api_tokens.all_tokens") if request.form.get("back") == "all" and user.can(ADMIN) \
        else url_for("api_tokens.index")
    form = RevokeForm()
    reason = (form.reason.data or "").strip() if form.validate_on_submit() else ""
    if token.user_id != user.id and len(reason) < 4:
        flash("A reason for change (at least 4 characters) is required to revoke another person's token.", "danger")
        return redirect(f"{back}?revoke={token.id}")
    try:
        with transaction(reason=reason or None):
            tokens.revoke(token, actor=user)
    except AttestError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"Token {token.token_prefix}… ({token.name}) was revoked: it stopped working at once.", "success")
    return redirect(back)
