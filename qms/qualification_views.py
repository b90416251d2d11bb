"""Team qualification matrix and personal training records (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("qualification", __name__, url_prefix="/training", template_folder="templates")
