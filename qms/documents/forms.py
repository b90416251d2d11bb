"""Forms of document control."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import IntegerField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from core.forms import MultiCheckboxField, ReasonMixin, choices
from qms.documents.models import RELEASE_POLICIES


class DocumentForm(FlaskForm):
    number = StringField("Number", validators=[DataRequired(message="Number is required."), Length(max=40)])
    title = StringField("Title", validators=[DataRequired(message="Title is required."), Length(max=300)])
    doc_type = SelectField("Type", validators=[DataRequired(message="Type is required.")])
    department_id = SelectField("Owning department", coerce=int,
                                validators=[DataRequired(message="Owning department is required.")])
    owner_id = SelectField("Owner", coerce=int, validators=[DataRequired(message="Owner is required.")])
    review_interval_months = IntegerField("Periodic review interval (months)", default=24, validators=[
        DataRequired(message="Review interval is required."),
        NumberRange(min=1, max=120, message="Review interval must be 1 to 120 months.")])
    training_window_days = IntegerField("Training window (days)", default=14, validators=[
        NumberRange(min=0, max=365, message="Training window must be 0 to 365 days.")])
    audience = MultiCheckboxField("Training audience (job functions)", coerce=int, validate_choice=True)


class DocumentSettingsForm(ReasonMixin, FlaskForm):
    department_id = DocumentForm.department_id
    owner_id = DocumentForm.owner_id
    review_interval_months = DocumentForm.review_interval_months
    training_window_days = DocumentForm.training_window_days
    min_read_seconds = IntegerField("Minimum reading time before read-and-sign (seconds)", default=0, validators=[
        NumberRange(min=0, max=3600, message="Minimum reading time must be 0 to 3600 seconds.")])
    release_policy = SelectField("Release policy", choices=choices(RELEASE_POLICIES.items()),
                                 validators=[DataRequired(message="Release policy is required.")])
    audience = MultiCheckboxField("Training audience (job functions)", coerce=int, validate_choice=True)


class RevisionForm(FlaskForm):
    kind = RadioField("Revision", choices=choices([("minor", "Minor (e.g. 1.0 → 1.1)"),
                                                   ("major", "Major (e.g. 1.1 → 2.0)")]),
                      default="major", validators=[DataRequired(message="Choose major or minor.")])
    change_summary = TextAreaField("Change summary", validators=[
        DataRequired(message="Change summary is required."), Length(max=4000)])
    reason = TextAreaField("Reason for revision", validators=[
        DataRequired(message="Reason for revision is required."), Length(max=4000)])
    content_markdown = TextAreaField("Content (Markdown)", validators=[Optional(), Length(max=1_000_000)])
    content_pdf = FileField("…or upload a PDF")
    expected_version = StringField()


class RoutingForm(FlaskForm):
    reviewers = MultiCheckboxField("Reviewers", coerce=int, validate_choice=True)
    approvers = MultiCheckboxField("Approvers", coerce=int, validate_choice=True)
