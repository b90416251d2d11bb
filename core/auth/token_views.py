"""Personal API tokens: create (shown once), list, revoke (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api_tokens", __name__, url_prefix="/account/api-tokens", template_folder="templates")
