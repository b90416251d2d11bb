"""HR import pages (training coordinators): upload the HR system's CSV file, read the dry run, apply it.

The page that applies is the page that showed the check: it carries the checked file back (or, when the file is too
large for a form field, asks for it again) with the fingerprint of the plan shown, and the import is refused if what
it would do now differs from what was shown. The service is training.hr_import.services.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, TextAreaField

from core.auth.access import permission_required
from core.db import transaction
from core.errors import AttestError
from core.forms import ReasonMixin
from training.hr_import import services as hris

bp = Blueprint("training_import", __name__, url_prefix="/training/import", template_folder="../templates")

PERMISSION = "training.manage"
_FORM_MARGIN = 64 * 1024  # room for the other fields of the apply form


class CheckForm(FlaskForm):
    file = FileField("HR file (CSV, UTF-8)", validators=[
        FileRequired(message="Choose the CSV file exported from the HR system.")])


class ApplyForm(ReasonMixin, FlaskForm):
    csv_text = TextAreaField()  # the checked file, carried back unseen
    file = FileField("Select the same file again")  # when it is too large to carry back in the page
    fingerprint = HiddenField()


def _uploaded(form: FlaskForm) -> bytes | None:
    upload = form.file.data
    if upload is None or not getattr(upload, "filename", ""):
        return None
    return upload.read(hris.MAX_BYTES + 1)


def _report(data: str | bytes, form: ApplyForm | None = None, status: int = 200):
    """The dry run of `data` with, when it can be applied, the form that applies exactly this plan."""
    result = hris.plan(data, actor=current_user)
    form = form or ApplyForm(formdata=None)
    text, _error = hris.read_text(data)
    limit = request.max_form_memory_size
    carry = limit is None or len(text.encode("utf-8", "surrogatepass")) <= limit - _FORM_MARGIN
    form.csv_text.data = text if carry else ""
    form.fingerprint.data = result.fingerprint
    return render_template("training/import/report.html", plan=result, form=form, carry=carry,
                           can_apply=not result.errors and result.changes > 0), status


@bp.route("/")
@permission_required(PERMISSION)
def index():
    return render_template("training/import/index.html", form=CheckForm())


@bp.route("/check", methods=["POST"])
@permission_required(PERMISSION)
def check():
    form = CheckForm()
    if not form.validate_on_submit():
        return render_template("training/import/index.html", form=form), 422
    return _report(_uploaded(form))


@bp.route("/apply", methods=["POST"])
@permission_required(PERMISSION)
def apply():
    form = ApplyForm()
    data = form.csv_text.data or _uploaded(form)
    if not data:
        flash("The file to import is missing: check it again.", "danger")
        return redirect(url_for("training_import.index"), 303)
    if not form.validate_on_submit():
        return _report(data, form, 422)
    try:
        with transaction(reason=form.reason.data):
            result = hris.apply(data, actor=current_user, expected_fingerprint=form.fingerprint.data)
    except AttestError as exc:  # errors in the file, a plan that changed since the check, a refusal
        flash(exc.message, "warning" if isinstance(exc, hris.PlanChanged) else "danger")
        return _report(data, form, exc.status)
    flash(f"The import was applied: {result.summary()}.", "success")
    return render_template("training/import/report.html", plan=result, form=None, carry=False, can_apply=False,
                           applied=True)
