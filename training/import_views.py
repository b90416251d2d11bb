"""HRIS CSV import page (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("training_import", __name__, url_prefix="/training/import", template_folder="templates")
