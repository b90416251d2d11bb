"""Training matrix, gap analysis and manual assignment pages (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("training_matrix", __name__, url_prefix="/training", template_folder="templates")
