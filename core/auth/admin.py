"""User administration: accounts, role grants, unlock, password and second-factor resets.

Deactivating and reactivating a person is training's (training/people/accounts.py): leaving closes their open
training in the same transaction, by an explicit call. Its buttons appear on the user page like core's own, through
`register_account_action`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core.audit.views import events_for_user, record_history
from core.auth import services
from core.auth.access import permission_required
from core.auth.forms import EditUserForm, UserForm
from core.auth.models import User, UserRole
from core.auth.permissions import ROLES
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import ReasonForm, choices
from core.org import Department, Site

bp = Blueprint("users", __name__, url_prefix="/admin/users")


@dataclass(frozen=True)
class AccountAction:
    """A button of the user page's Actions (a POST with a reason for change to `endpoint`, taking `user_id`)."""

    endpoint: str
    label: str
    style: str  # Bootstrap button class
    shown: Callable[[User], bool]  # whether it applies to this account now
    position: int


def register_account_action(app, action: AccountAction) -> None:
    actions = app.extensions.setdefault("attest_account_actions", [])
    if action not in actions:
        actions.append(action)
        actions.sort(key=lambda a: a.position)


def _always(user: User) -> bool:
    return True


def _locked(user: User) -> bool:
    return user.security.locked


def _totp_enrolled(user: User) -> bool:
    return user.security.totp_enrolled


CORE_ACTIONS = (
    AccountAction("users.unlock", "Unlock", "btn-outline-warning", _locked, position=20),
    AccountAction("users.reset_password", "Reset password", "btn-outline-secondary", _always, position=30),
    AccountAction("users.reset_totp", "Revoke authenticator", "btn-outline-secondary", _totp_enrolled, position=40),
)


def _get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description=f"There is no user with id {user_id}.")
    return user


def _fill_choices(form: UserForm) -> None:
    sites = db.session.scalars(sa.select(Site).order_by(Site.code))
    departments = db.session.scalars(sa.select(Department).order_by(Department.site_id, Department.code))
    supervisors = db.session.scalars(sa.select(User).where(User.active.is_(True)).order_by(User.full_name))
    form.site_id.choices = choices([(None, "—")] + [(s.id, f"{s.code} — {s.name}") for s in sites])
    form.department_id.choices = choices([(None, "—")] + [(d.id, f"{d.site.code} / {d.code} — {d.name}")
                                                          for d in departments])
    form.supervisor_id.choices = choices([(None, "—")] + [(u.id, f"{u.full_name} ({u.username})")
                                                          for u in supervisors])
    form.roles.choices = choices((r.code, r.name) for r in ROLES.values())


@bp.route("/")
@permission_required("users.view")
def index():
    q = (request.args.get("q") or "").strip()
    status = request.args.get("status", "active")
    role = request.args.get("role", "")
    stmt = sa.select(User).order_by(User.username)
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(sa.or_(sa.func.lower(User.username).like(like), sa.func.lower(User.full_name).like(like),
                                 sa.func.lower(User.email).like(like)))
    if status == "active":
        stmt = stmt.where(User.active.is_(True))
    elif status == "inactive":
        stmt = stmt.where(User.active.is_(False))
    if role in ROLES:
        stmt = stmt.where(User.id.in_(sa.select(UserRole.user_id).where(UserRole.role == role)))
    users = list(db.session.scalars(stmt.limit(500).options(sa.orm.selectinload(User.role_grants),
                                                            sa.orm.selectinload(User.security),
                                                            sa.orm.selectinload(User.department))))
    return render_template("core/users/index.html", users=users, q=q, status=status, role=role, roles=ROLES)


@bp.route("/new", methods=["GET", "POST"])
@permission_required("users.manage")
def create():
    form = UserForm()
    _fill_choices(form)
    if form.validate_on_submit():
        try:
            with transaction():
                user, temporary = services.create_user(
                    username=form.username.data, full_name=form.full_name.data, email=form.email.data,
                    roles=set(form.roles.data or []), site_id=form.site_id.data,
                    department_id=form.department_id.data, supervisor_id=form.supervisor_id.data,
                    timezone=(form.timezone.data or "").strip() or None, actor=current_user)
        except ValidationError as exc:
            getattr(form, exc.field).errors.append(exc.message)
        else:
            return render_template("core/users/temporary_password.html", user=user, password=temporary,
                                   created=True)
    return render_template("core/users/form.html", form=form, user=None), 422 if form.errors else 200


@bp.route("/<int:user_id>")
@permission_required("users.view")
def show(user_id: int):
    user = _get_user(user_id)
    history = record_history(User, user.id) if current_user.can("audit.view") else None
    events = events_for_user(user.id) if current_user.can("audit.view") else None
    grants = []
    if current_user.can("audit.view"):
        from sqlalchemy_continuum import version_class

        vcls = version_class(UserRole)
        grant_ids = db.session.scalars(sa.select(vcls.id).where(vcls.user_id == user.id).distinct())
        for gid in grant_ids:
            grants.extend(record_history(UserRole, gid))
        grants.sort(key=lambda e: e.tx.id)
    actions = [a for a in current_app.extensions.get("attest_account_actions", []) if a.shown(user)]
    return render_template("core/users/show.html", user=user, history=history, events=events, grants=grants,
                           reason_form=ReasonForm(), actions=actions)


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@permission_required("users.manage")
def edit(user_id: int):
    user = _get_user(user_id)
    form = EditUserForm(obj=user)
    _fill_choices(form)
    if request.method == "GET":
        form.roles.data = sorted(user.role_codes)
    status = 200
    if form.validate_on_submit():
        if form.username.data.strip().lower() != user.username:
            form.username.errors.append("Username cannot be changed: user IDs are never reassigned.")
        else:
            try:
                with transaction(reason=form.reason.data):
                    services.update_profile(user, full_name=form.full_name.data, email=form.email.data,
                                            site_id=form.site_id.data, department_id=form.department_id.data,
                                            supervisor_id=form.supervisor_id.data,
                                            timezone=(form.timezone.data or "").strip() or None)
                    services.set_roles(user, set(form.roles.data or []), actor=current_user)
            except ValidationError as exc:
                getattr(form, exc.field).errors.append(exc.message)
            except AttestError as exc:
                flash(exc.message, "danger")
                status = exc.status  # a refusal is not a 200 OK
            else:
                flash(f"{user.username} was updated.", "success")
                return redirect(url_for("users.show", user_id=user.id))
    return render_template("core/users/form.html", form=form, user=user), 422 if form.errors else status


def reason_action(user_id: int, action, done: str, *, show_password: bool = False):
    """POST of an account action: the reason for change, `action(user)` in one transaction, the outcome flashed on
    the user page (or the temporary password shown)."""
    user = _get_user(user_id)
    form = ReasonForm()
    if not form.validate_on_submit():
        for message in form.reason.errors:
            flash(f"Reason for change: {message}", "danger")
        return redirect(url_for("users.show", user_id=user.id)), 303
    try:
        with transaction(reason=form.reason.data):
            result = action(user)
    except AttestError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("users.show", user_id=user.id)), 303
    if show_password:
        return render_template("core/users/temporary_password.html", user=user, password=result, created=False)
    flash(done.format(user=user.username), "success")
    return redirect(url_for("users.show", user_id=user.id))


@bp.route("/<int:user_id>/unlock", methods=["POST"])
@permission_required("users.manage")
def unlock(user_id: int):
    return reason_action(user_id, lambda u: services.unlock(u, actor=current_user), "{user} was unlocked.")


@bp.route("/<int:user_id>/reset-password", methods=["POST"])
@permission_required("users.manage")
def reset_password(user_id: int):
    return reason_action(user_id, lambda u: services.admin_reset_password(u, actor=current_user), "",
                         show_password=True)


@bp.route("/<int:user_id>/reset-totp", methods=["POST"])
@permission_required("users.manage")
def reset_totp(user_id: int):
    return reason_action(user_id, lambda u: services.admin_reset_totp(u, actor=current_user),
                         "The authenticator of {user} was revoked; they enrol a new one at their next login.")
