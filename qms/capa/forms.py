"""Forms of the CAPA pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.forms import MultiCheckboxField, choices
from qms.capa.models import ACTION_KINDS, SOURCE_TYPES


class CapaForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(message="Title is required."), Length(max=300)])
    source_type = SelectField("Source", choices=choices(SOURCE_TYPES.items()),
                              validators=[DataRequired(message="Source is required.")])
    source_id = StringField("Source record (deviation or change control number)",
                            validators=[Optional(), Length(max=40)])
    source_reference = StringField("Source reference (audit finding, complaint, …)",
                                   validators=[Optional(), Length(max=200)])
    problem_statement = TextAreaField("Problem statement", validators=[
        DataRequired(message="Problem statement is required."), Length(max=4000)])
    root_cause = TextAreaField("Root cause", validators=[Optional(), Length(max=4000)])
    owner_id = SelectField("Owner", coerce=int, validators=[DataRequired(message="Owner is required.")])


class CapaEditForm(FlaskForm):
    title = CapaForm.title
    source_reference = CapaForm.source_reference
    problem_statement = CapaForm.problem_statement
    root_cause = CapaForm.root_cause
    owner_id = CapaForm.owner_id
    reason = TextAreaField("Reason for change (required once the plan is approved)",
                           validators=[Optional(), Length(max=1000)])
    expected_version = StringField()


class ActionForm(FlaskForm):
    kind = SelectField("Kind", choices=choices(ACTION_KINDS.items()),
                       validators=[DataRequired(message="Kind is required.")])
    description = TextAreaField("Description", validators=[
        DataRequired(message="Description is required."), Length(max=4000)])
    owner_id = SelectField("Action owner", coerce=int, validators=[DataRequired(message="Action owner is required.")])
    due_on = DateField("Due on", validators=[DataRequired(message="Due date is required (a date).")])
    retraining = BooleanField("Retraining action (assigns training when QA approves it)")
    document_ids = MultiCheckboxField("Documents to train on", coerce=int, validate_choice=True)
    user_ids = MultiCheckboxField("People to retrain", coerce=int, validate_choice=True)
    job_function_ids = MultiCheckboxField("Job functions to retrain (everyone holding them)", coerce=int,
                                          validate_choice=True)
    expected_version = StringField()
