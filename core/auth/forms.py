"""Forms of the identity and access pages (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from core.converters import MAX_ID


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(message="Username is required."),
                                                   Length(max=64, message="Username is at most 64 characters.")])
    password = PasswordField("Password", validators=[DataRequired(message="Password is required."),
                                                     Length(max=256, message="Password is at most 256 characters.")])


class TotpForm(FlaskForm):
    code = StringField("Authentication code", validators=[
        DataRequired(message="Authentication code is required."),
        Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message="Authentication code is the 6 digits your authenticator app shows."),
    ])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[
        DataRequired(message="Current password is required.")])
    new_password = PasswordField("New password", validators=[DataRequired(message="New password is required."),
                                                             Length(max=256)])
    confirm_password = PasswordField("Repeat new password", validators=[
        DataRequired(message="Repeat the new password.")])


class ReasonMixin:
    reason = TextAreaField("Reason for change", validators=[
        DataRequired(message="Reason for change is required."),
        Length(min=4, max=1000, message="Reason for change must be 4 to 1000 characters."),
    ])


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms choices."""
    return [SelectChoice(value, label) for value, label in pairs]


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _coerce_optional_int(value):
    """An optional record id from a select; a number no id column can hold is refused ("could not coerce") before
    it reaches the database, which would fail on it."""
    if value in (None, "", "None"):
        return None
    number = int(value)
    if abs(number) > MAX_ID:
        raise ValueError(f"{value} is not a record id")
    return number


class UserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(message="Username is required."), Length(max=64)])
    full_name = StringField("Full printed name", validators=[
        DataRequired(message="Full printed name is required."), Length(max=200)])
    email = StringField("E-mail", validators=[DataRequired(message="E-mail is required."),
                                              Email(message="E-mail must be a valid address."), Length(max=254)])
    site_id = SelectField("Site", coerce=_coerce_optional_int, validators=[Optional()])
    department_id = SelectField("Department", coerce=_coerce_optional_int, validators=[Optional()])
    supervisor_id = SelectField("Supervisor", coerce=_coerce_optional_int, validators=[Optional()])
    timezone = StringField("Time zone", validators=[Optional(), Length(max=64)])
    roles = MultiCheckboxField("Roles", validate_choice=True)


class EditUserForm(ReasonMixin, UserForm):
    pass


class ReasonForm(ReasonMixin, FlaskForm):
    pass


class ProfileForm(FlaskForm):
    timezone = StringField("Time zone", validators=[Optional(), Length(max=64)])


class ConfirmForm(FlaskForm):
    confirm = BooleanField("I confirm", validators=[DataRequired(message="Tick the box to confirm.")])


def show_error(form, exc) -> None:
    """Show a service's ValidationError under the form field it names (or as a flash message when the form has no
    such field)."""
    from flask import flash

    target = getattr(form, exc.field, None)
    if target is not None:
        target.errors = [*target.errors, exc.message]
    else:
        flash(exc.message, "danger")
