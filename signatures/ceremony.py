"""The signing ceremony as the web pages run it, and the one signing view every record type's transitions use.

`perform()` runs a ceremony: step one authenticates the signer in a unit of work of its own, committed whatever the
outcome, so that a failure is audited and counts toward lockout; step two runs the business action (which signs) in
a second unit of work that rolls back whole on any refusal.

`expose()` puts a record type's declared transitions (`signatures.lifecycle`) on its blueprint: a signed step, or an
unsigned step where the person writes something, gets a page (GET shows the form, POST acts) unless declared
otherwise; any other unsigned step is a POST from a form on the record page (its fields, the version the page shows
and the button). URLs and endpoint names come from the declaration, so links, tests and the
authorisation matrix name them. One template, `signatures/sign.html`, shows every signing page; a record type adds
its own panel (e.g. the training an approval assigns) as a small partial template with its context.
`lifecycle_buttons()` (a template global) gives a record page its buttons, rendered by the macro in
`signatures/_transitions.html`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, RadioField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.auth.access import permission_required
from core.db import db, transaction
from core.errors import AttestError, ValidationError
from core.forms import choices
from signatures import services
from signatures.forms import SignForm
from signatures.lifecycle import DATE, NO_TEXT, YES_NO, Act, FormField, Lifecycle, Transition

LOCKED = "Signature refused. Your account is now locked after repeated failed attempts."
REFUSED = ("Signature refused: the password or authentication code is not correct. Failed attempts count toward "
           "locking your account.")

# the signing page's templates (no routes of its own)
bp = Blueprint("signatures", __name__, template_folder="templates")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int = 200
    response: Any = None  # a response to return as it is (e.g. to the login page after a lockout)


def _refused(form, exc: AttestError) -> Outcome:
    db.session.rollback()
    if isinstance(exc, ValidationError):
        field = getattr(form, exc.field, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, exc.message]
        else:
            flash(exc.message, "danger")
        return Outcome(False, 422)
    flash(exc.message, "danger")
    return Outcome(False, exc.status)


def perform(form, action: Callable[[Any, services.SignerProof], Any]) -> Outcome:
    """Run the ceremony for a validated signing form; `action(user, proof)` does the signed work.

    Refusals are shown to the user (a field error when the refusal names a field of the form, else a message) and
    leave nothing written."""
    user = current_user._get_current_object()
    services.precheck(user, form.password.data)
    with transaction():
        proof = services.authenticate(user, password=form.password.data, totp_code=form.totp_code.data)
    if proof is None:
        if user.security.locked:
            flash(LOCKED, "danger")
            return Outcome(False, 302, redirect(url_for("auth.login")))
        flash(REFUSED, "danger")
        return Outcome(False, 401)
    try:
        with transaction():
            action(user, proof)
    except AttestError as exc:
        return _refused(form, exc)
    return Outcome(True)


def perform_unsigned(form, action: Callable[[Any], Any]) -> Outcome:
    """An unsigned step in one unit of work, its refusals shown as `perform()` shows them."""
    try:
        with transaction():
            action(current_user._get_current_object())
    except AttestError as exc:
        return _refused(form, exc)
    return Outcome(True)


# --- the form of a transition -----------------------------------------------------------------------------------------


@cache
def form_class(transition: Transition) -> type[FlaskForm]:
    """The transition's form, from its declaration: the signing fields (signed steps), the version the page showed,
    the extra fields and the text the person writes, with the declared limits."""
    attrs: dict[str, Any] = {"expected_version": HiddenField()}
    text = transition.text
    if transition.signed:
        attrs["comment"] = None  # the declaration says whether, and under which name, the signer writes
    if text.kind != NO_TEXT:
        length = Length(min=text.min_length or -1, max=text.limit,
                        message=(f"{text.label} must be {text.min_length} to {text.limit} characters."
                                 if text.min_length else f"At most {text.limit} characters."))
        required = DataRequired(message=f"{text.what} is required.") if text.required else Optional()
        attrs[text.field] = TextAreaField(text.label, validators=[required, length])
    for extra in transition.fields:
        attrs[extra.name] = _extra_field(extra)
    name = "".join(part.capitalize() for part in transition.action.split("-")) + "Form"
    return type(name, (SignForm if transition.signed else FlaskForm,), attrs)


def _extra_field(extra: FormField) -> Any:
    needed = [DataRequired(message=extra.required)] if extra.required else [Optional()]
    if extra.kind == DATE:
        return DateField(extra.label, validators=needed)
    if extra.kind == YES_NO:
        return RadioField(extra.label, choices=choices([("yes", "Yes"), ("no", "No")]), validators=needed)
    return TextAreaField(extra.label, validators=[*needed, Length(max=extra.limit)])


# --- record pages: the buttons ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    lifecycle: Lifecycle
    blueprint: str
    url_args: Callable[[Any], dict[str, Any]]


_BOUND: dict[str, Binding] = {}


@dataclass
class Button:
    transition: Transition
    url: str
    label: str
    style: str
    form: FlaskForm | None = None  # an unsigned step without a page of its own posts this form from the record page
    fields: tuple[Any, ...] = ()


def endpoint_of(lifecycle: Lifecycle | str, action: str) -> str:
    """The endpoint a transition was exposed at (e.g. "documents.sign_approve")."""
    binding = _BOUND[lifecycle if isinstance(lifecycle, str) else lifecycle.name]
    return f"{binding.blueprint}.{binding.lifecycle[action].endpoint_name}"


def url_of(lifecycle: Lifecycle | str, record: Any, action: str) -> str:
    """The URL of a transition's page (or of its POST) for `record`."""
    binding = _BOUND[lifecycle if isinstance(lifecycle, str) else lifecycle.name]
    return url_for(endpoint_of(lifecycle, action), **binding.url_args(record))


@bp.app_template_global()
def lifecycle_buttons(lifecycle: Lifecycle | str, record: Any) -> list[Button]:
    """The record page's buttons for the logged-in user: the transitions `available()` gives, each a link to its
    page or, for an unsigned step without one, a form posting the version the page shows (once)."""
    binding = _BOUND[lifecycle if isinstance(lifecycle, str) else lifecycle.name]
    lc = binding.lifecycle
    buttons = []
    for t in lc.available(record, current_user):
        url = url_of(lc, record, t.action)
        if t.own_page:
            buttons.append(Button(t, url, t.label, t.style))
            continue
        form = form_class(t)(formdata=None, expected_version=lc.version_of(record))
        names = [f.name for f in t.fields] + ([t.text.field] if t.text.kind != NO_TEXT else [])
        buttons.append(Button(t, url, t.label, t.style, form, tuple(form[name] for name in names)))
    return buttons


# --- the view ---------------------------------------------------------------------------------------------------------


def expose(blueprint: Blueprint, lifecycle: Lifecycle, *, rule: str, load: Callable[..., Any],
           url_args: Callable[[Any], dict[str, Any]], back: Callable[[Any], str],
           panels: dict[str, str] | None = None,
           context: Callable[[Any, Transition], dict[str, Any]] | None = None) -> None:
    """Register every transition of `lifecycle` on `blueprint` at `rule` + "/" + its path, with its endpoint name.

    `load(**view_args)` returns the record (or aborts 404), `url_args(record)` builds the URL arguments back from it,
    `back(record)` is the record page; `panels` maps an action to a partial template shown on its page, filled from
    `context(record, transition)`."""
    _BOUND[lifecycle.name] = Binding(lifecycle, blueprint.name, url_args)
    for t in lifecycle.transitions.values():
        view = _make_view(lifecycle, t, load, back, (panels or {}).get(t.action), context)
        blueprint.add_url_rule(f"{rule}/{t.url_part}", endpoint=t.endpoint_name,
                               view_func=permission_required(*t.permissions)(view),
                               methods=["GET", "POST"] if t.own_page else ["POST"])


def _make_view(lifecycle: Lifecycle, t: Transition, load: Callable[..., Any], back: Callable[[Any], str],
               panel: str | None, context: Callable[[Any, Transition], dict[str, Any]] | None) -> Callable:
    def view(**kwargs: Any):
        record = load(**kwargs)
        form = form_class(t)()
        if t.signed:
            form.meaning.choices = choices([(t.meaning, t.meaning)])
        if request.method == "GET":
            form.expected_version.data = lifecycle.version_of(record)
            if t.signed:
                form.meaning.data = t.meaning
        if not t.own_page:
            return _step(lifecycle, t, record, form, back)
        status = 200
        if form.validate_on_submit():
            acts: list[Act] = []

            def act(user: Any, proof: Any = None) -> None:
                acts.append(_apply(lifecycle, t, record, form, user, proof))

            outcome = perform(form, act) if t.signed else perform_unsigned(form, act)
            if outcome.response is not None:
                return outcome.response
            if outcome.ok:
                flash(lifecycle.done_message(acts[0]), "success")
                return redirect(back(record))
            status = outcome.status
        elif form.errors:
            status = 422
        return _page(lifecycle, t, record, form, back, panel, context), status

    view.__name__ = t.endpoint_name
    view.__doc__ = f"{lifecycle.title}: {t.label.rstrip('…')} ({'signed ' + t.meaning if t.signed else 'unsigned'})."
    return view


def _apply(lifecycle: Lifecycle, t: Transition, record: Any, form, user: Any, proof: Any) -> Act:
    expected = (form.expected_version.data or "").strip()  # a page always sends it: empty is a stale or broken form
    text = form[t.text.field].data if t.text.kind != NO_TEXT else None
    values = {f.name: form[f.name].data for f in t.fields}
    return lifecycle.apply(record, t.action, actor=user, proof=proof, expected_version=expected, text=text,
                           values=values)


def _step(lifecycle: Lifecycle, t: Transition, record: Any, form, back: Callable[[Any], str]):
    """An unsigned step posted from the record page's button: done, or refused with the reason shown there."""
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "danger")
        return redirect(back(record)), 303
    acts: list[Act] = []
    try:
        with transaction():
            acts.append(_apply(lifecycle, t, record, form, current_user._get_current_object(), None))
    except AttestError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return redirect(back(record)), 303
    flash(lifecycle.done_message(acts[0]), "success")
    return redirect(back(record))


def _help(value: Any, record: Any) -> str | None:
    return value(record) if callable(value) else value


def _page(lifecycle: Lifecycle, t: Transition, record: Any, form, back: Callable[[Any], str], panel: str | None,
          context: Callable[[Any, Transition], dict[str, Any]] | None) -> str:
    signed = lifecycle.signed_record(record)
    extra = context(record, t) if (context is not None and panel) else {}
    return render_template(
        "signatures/sign.html", form=form, transition=t, lifecycle=lifecycle, record=record, signed=signed,
        summary=lifecycle.summary(record), back=back(record), panel=panel,
        fields=[(f.name, _help(f.help, record)) for f in t.fields],
        text_field=t.text.field if t.text.kind != NO_TEXT else None, text_help=_help(t.text.help, record),
        declaration=services.DECLARATION, content_hash=services.content_hash(signed) if t.signed else None,
        totp=current_user.security.totp_enrolled, **extra)
