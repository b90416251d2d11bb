"""Login, second factor, logout and the user's own account pages."""

from __future__ import annotations

from urllib.parse import urlsplit

import segno
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from core.auth import services
from core.auth.access import AUTHENTICATED, end_session, permission_required, public, start_session
from core.auth.forms import ChangePasswordForm, LoginForm, ProfileForm, TotpForm
from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from core.errors import ValidationError
from core.extensions import limiter

bp = Blueprint("auth", __name__)

PENDING_TTL = 300  # seconds between a correct password and the second factor


def _safe_next(target: str | None) -> str:
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("main.index")


def _login_limit() -> str:
    return current_app.config["ATTEST_LOGIN_RATE_LIMIT"]


def _finish_login(user: User, next_url: str | None):
    with transaction():
        nonce = services.complete_login(user)
    start_session(user, nonce)
    if user.security.must_change_password:
        flash("You must choose a new password before you continue.", "warning")
        return redirect(url_for("auth.change_password"))
    if services.totp_required(user) and not user.security.totp_enrolled:
        flash("Your roles require a second factor: set up your authenticator app now.", "warning")
        return redirect(url_for("auth.totp_enroll"))
    return redirect(_safe_next(next_url))


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    next_url = request.args.get("next")
    if form.validate_on_submit():
        services.precheck_login(form.username.data, form.password.data)
        with transaction():
            result = services.authenticate(form.username.data, form.password.data)
        if not result.ok:
            flash(result.message, "danger")
            return render_template("core/auth/login.html", form=form), 401
        user = result.user
        if user.security.totp_enrolled:
            session.clear()
            session["_pending_uid"] = user.id
            session["_pending_at"] = int(now_utc().timestamp())
            session["_pending_next"] = _safe_next(next_url)
            return redirect(url_for("auth.login_totp"))
        return _finish_login(user, next_url)
    status = 422 if form.errors else 200
    return render_template("core/auth/login.html", form=form), status


@bp.route("/login/code", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"])
def login_totp():
    uid = session.get("_pending_uid")
    started = session.get("_pending_at", 0)
    if uid is None or int(now_utc().timestamp()) - started > PENDING_TTL:
        session.clear()
        flash("Enter your username and password first (the sign-in attempt expired after 5 minutes).", "info")
        return redirect(url_for("auth.login"))
    user = db.session.get(User, uid)
    form = TotpForm()
    if form.validate_on_submit():
        with transaction():
            ok = services.check_totp(user, form.code.data)
        if ok and user.active and not user.security.locked:
            return _finish_login(user, session.get("_pending_next"))
        if user.security.locked:
            session.clear()
            flash(services.GENERIC_LOGIN_FAILURE, "danger")
            return redirect(url_for("auth.login"))
        flash("The authentication code is not valid (wrong, expired or already used).", "danger")
        return render_template("core/auth/login_totp.html", form=form), 401
    return render_template("core/auth/login_totp.html", form=form), 422 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@permission_required(AUTHENTICATED)
def logout():
    user = current_user._get_current_object()
    with transaction():
        services.logout(user)
    end_session()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@permission_required(AUTHENTICATED)
def change_password():
    form = ChangePasswordForm()
    user = current_user._get_current_object()
    if form.validate_on_submit():
        try:
            with transaction():
                nonce = services.change_password(user, current=form.current_password.data,
                                                 new=form.new_password.data, confirm=form.confirm_password.data)
        except ValidationError as exc:
            getattr(form, exc.field).errors.append(exc.message)
            return render_template("core/auth/change_password.html", form=form), 422
        start_session(user, nonce)
        flash("Your password has been changed. Other sessions of your account were signed out.", "success")
        if services.totp_required(user) and not user.security.totp_enrolled:
            return redirect(url_for("auth.totp_enroll"))
        return redirect(url_for("main.index"))
    return render_template("core/auth/change_password.html", form=form,
                           policy_min=current_app.config["ATTEST_PASSWORD_MIN_LENGTH"],
                           history=current_app.config["ATTEST_PASSWORD_HISTORY"]), 422 if form.errors else 200


@bp.route("/account/totp", methods=["GET", "POST"])
@permission_required(AUTHENTICATED)
def totp_enroll():
    user = current_user._get_current_object()
    form = TotpForm()
    if user.security.totp_enrolled:
        return render_template("core/auth/totp_enrolled.html", user=user)
    if not user.security.totp_pending_secret:
        with transaction():
            services.begin_totp_enrollment(user)
    secret = user.security.totp_pending_secret
    status = 200
    if form.validate_on_submit():
        try:
            with transaction():
                services.confirm_totp_enrollment(user, form.code.data)
        except ValidationError as exc:
            form.code.errors.append(exc.message)
            status = 422
        else:
            flash("Your authenticator is set up. You will be asked for a code at every login.", "success")
            return redirect(url_for("main.index"))
    elif form.errors:
        status = 422
    uri = services.provisioning_uri(user, secret)
    qr_svg = segno.make(uri, error="m").svg_inline(scale=5, title="Authenticator set-up code")
    return render_template("core/auth/totp_enroll.html", form=form, qr_svg=qr_svg, secret=secret), status


@bp.route("/account", methods=["GET", "POST"])
@permission_required(AUTHENTICATED)
def account():
    user = current_user._get_current_object()
    form = ProfileForm(obj=user)
    if form.validate_on_submit():
        try:
            with transaction():
                services.update_profile(user, full_name=user.full_name, email=user.email, site_id=user.site_id,
                                        department_id=user.department_id, supervisor_id=user.supervisor_id,
                                        timezone=(form.timezone.data or "").strip() or None)
        except ValidationError as exc:
            form.timezone.errors.append(exc.message)
        else:
            flash("Your time zone was saved.", "success")
            return redirect(url_for("auth.account"))
    return render_template("core/auth/account.html", user=user, form=form), 422 if form.errors else 200
