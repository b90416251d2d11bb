"""Forms of change control. The services hold the rules; these only parse and show errors by field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.forms import MultiCheckboxField, choices
from qms.change_control.models import CHANGE_TYPES, RISK_LEVELS, TASK_STATUS_LABELS


class ChangeForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(message="Title is required."), Length(max=300)])
    description = TextAreaField("Description of the change", validators=[
        DataRequired(message="Description is required."), Length(max=4000)])
    justification = TextAreaField("Justification", validators=[
        DataRequired(message="Justification is required."), Length(max=4000)])
    change_type = SelectField("Change type", choices=choices(CHANGE_TYPES.items()),
                              validators=[DataRequired(message="Change type is required.")])
    risk_level = SelectField("Risk level", choices=choices(RISK_LEVELS.items()),
                             validators=[DataRequired(message="Risk level is required.")])
    risk_rationale = TextAreaField("Risk rationale", validators=[
        DataRequired(message="Risk rationale is required."), Length(max=4000)])
    owner_id = SelectField("Owner", coerce=int, validators=[DataRequired(message="Owner is required.")])
    documents = MultiCheckboxField("Affected documents", coerce=int, validate_choice=True)
    job_functions = MultiCheckboxField("Affected job functions", coerce=int, validate_choice=True)
    reason = TextAreaField("Reason for change (required once the change has left Draft)",
                           validators=[Optional(), Length(max=1000)])
    expected_version = HiddenField()


class ScopeForm(FlaskForm):
    documents = ChangeForm.documents
    job_functions = ChangeForm.job_functions
    expected_version = HiddenField()


class TaskForm(FlaskForm):
    task_title = StringField("Task", validators=[DataRequired(message="Task is required."), Length(max=300)])
    task_owner_id = SelectField("Owner", coerce=int, validators=[DataRequired(message="Owner is required.")])
    due_on = DateField("Due on", validators=[DataRequired(message="Due date is required.")])


class TaskStatusForm(FlaskForm):
    status = SelectField("Status", choices=choices(TASK_STATUS_LABELS.items()),
                         validators=[DataRequired(message="Status is required.")])
    note = StringField("Note (why, when cancelled)", validators=[Optional(), Length(max=2000)])
