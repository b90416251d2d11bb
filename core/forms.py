"""Form helpers every package's pages share (Flask-WTF: every form carries a CSRF token).

`choices` builds select options, `MultiCheckboxField` a list of checkboxes, `coerce_optional_id` reads an optional
record id from a select, `ReasonMixin`/`ReasonForm` ask for a reason for change, `ConfirmForm` for an explicit
confirmation, and `show_error` puts a service's `ValidationError` under the field it names.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from core.converters import MAX_ID


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


def coerce_optional_id(value):
    """An optional record id from a select; a number no id column can hold is refused ("could not coerce") before
    it reaches the database, which would fail on it."""
    if value in (None, "", "None"):
        return None
    number = int(value)
    if abs(number) > MAX_ID:
        raise ValueError(f"{value} is not a record id")
    return number


class ReasonForm(ReasonMixin, FlaskForm):
    pass


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
