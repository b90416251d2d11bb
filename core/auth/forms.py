"""Forms of the identity and access pages (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp

from core.forms import MultiCheckboxField, ReasonMixin
from core.forms import coerce_optional_id as _coerce_optional_int


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


class ProfileForm(FlaskForm):
    timezone = StringField("Time zone", validators=[Optional(), Length(max=64)])
