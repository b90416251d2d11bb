"""Deviation forms. They check shape only (required, length, choice); the rules (dates in order, the department in
the site, a reason once the investigation started) are the service's, shown under the field they name."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, HiddenField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from core.forms import coerce_optional_id as _coerce_optional_int

MOMENT = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


class DeviationForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(message="Title is required."), Length(max=300)])
    occurred_at = DateTimeLocalField("Occurred at", format=MOMENT, validators=[
        DataRequired(message="Occurred at is required (date and time).")])
    discovered_at = DateTimeLocalField("Discovered at", format=MOMENT, validators=[
        DataRequired(message="Discovered at is required (date and time).")])
    site_id = SelectField("Site", coerce=_coerce_optional_int, validators=[DataRequired(message="Choose a site.")])
    department_id = SelectField("Department", coerce=_coerce_optional_int,
                                validators=[DataRequired(message="Choose a department.")])
    area = StringField("Area / equipment", validators=[Optional(), Length(max=200)])
    description = TextAreaField("Description", validators=[DataRequired(message="Description is required.")])
    immediate_actions = TextAreaField("Immediate actions", validators=[Optional()])
    owner_id = SelectField("Owner", coerce=_coerce_optional_int, validators=[Optional()])
    person_ids = SelectMultipleField("People involved", coerce=int, validators=[Optional()])
    document_ids = SelectMultipleField("Procedures concerned", coerce=int, validators=[Optional()])
    reason = StringField("Reason for change", validators=[Optional(), Length(max=2000)])
    expected_version = HiddenField()


class LinksForm(FlaskForm):
    person_ids = SelectMultipleField("People involved", coerce=int, validators=[Optional()])
    document_ids = SelectMultipleField("Procedures concerned", coerce=int, validators=[Optional()])
    capa_number = StringField("Linked CAPA number", validators=[Optional(), Length(max=32)])
    reason = StringField("Reason for change", validators=[Optional(), Length(max=2000)])
    expected_version = HiddenField()


class ClassifyForm(FlaskForm):
    classification = SelectField("Classification", validators=[DataRequired(message="Choose a classification.")])
    classification_justification = TextAreaField("Classification justification", validators=[
        DataRequired(message="Justification is required.")])
    reason = StringField("Reason for change", validators=[Optional(), Length(max=2000)])
    expected_version = HiddenField()


class InvestigationForm(FlaskForm):
    investigation = TextAreaField("Investigation", validators=[DataRequired(message="Investigation is required.")])
    root_cause = TextAreaField("Root cause", validators=[Optional()])
    root_cause_category = SelectField("Root cause category", validators=[Optional()])
    reason = StringField("Reason for change", validators=[Optional(), Length(max=2000)])
    expected_version = HiddenField()
