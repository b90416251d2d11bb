"""Forms of the validation pages: starting a run, approving protocol files and signing a run."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.forms import MultiCheckboxField
from signatures.forms import SignForm


class StartRunForm(FlaskForm):
    protocol = HiddenField("Protocol", validators=[DataRequired(message="Protocol is required.")])


class ApproveFilesForm(SignForm):
    """QA approves the current text of the chosen feature files and the current manifest of the chosen step code: one
    "Approved" signature per entry."""

    paths = MultiCheckboxField("Feature files and step code to approve", validate_choice=True, validators=[
        DataRequired(message="Choose at least one feature file or step code to approve.")])
    reason = TextAreaField("Reason for the new version (required when a file changed since its approved version)",
                           validators=[Optional(), Length(max=1000, message="At most 1000 characters.")])
