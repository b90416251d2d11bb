"""The signing dialog, shared by every signed record."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp


class SignForm(FlaskForm):
    """Password (always) and TOTP code (when enrolled or required), the meaning, an optional comment, and the
    version of the record the signer saw (a record changed since is refused as stale)."""

    meaning = SelectField("Meaning of this signature", validators=[DataRequired(message="Choose a meaning.")])
    password = PasswordField("Your password", validators=[DataRequired(message="Password is required to sign.")])
    totp_code = StringField("Authentication code", validators=[
        Optional(), Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message="Authentication code is the 6 digits of your app.")])
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=2000, message="At most 2000 characters.")])
    expected_version = HiddenField()
