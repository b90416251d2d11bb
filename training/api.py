"""JSON API for shop-floor systems (MES, LIMS), authenticated by personal API tokens (docs/api.md).

The token travels only in the `Authorization: Bearer` header, never in the address, which access logs and proxies
record. The API uses no login session and no CSRF token, and always answers JSON. Every request made with a valid
token is an audit event attributed to the token's owner, whatever its outcome; a request without one is recorded as
a refusal. Refusals are rate-limited per client address (`REFUSAL_RATE_LIMIT`), so a flood of invented tokens adds
at most that many rows a minute to the audit trail; all API requests share a wider limit (`API_RATE_LIMIT`).

Who may ask: any person holding an active token may ask about themself with "training.view_own"; asking about
someone else needs "training.view_team", the permission that shows other people's training status in the web pages.
The MES acts for the token's owner and can learn no more than that person could.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from core import audit
from core.auth import tokens
from core.auth.access import token_only
from core.auth.models import User
from core.auth.permissions import PERMISSIONS
from core.auth.services import get_by_username
from core.clock import now_utc
from core.db import db, transaction
from core.extensions import csrf, limiter
from training import items
from training.models import TrainingSubject
from training.qualification.services import qualification as qualification_of

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

API_RATE_LIMIT = "600 per minute"  # every API request, per client address (each answered one is an audit row)
REFUSAL_RATE_LIMIT = "20 per minute"  # requests without a valid token, per client address
OWN = "training.view_own"
OTHERS = "training.view_team"
URL_TOKEN_PARAMETERS = ("token", "access_token", "api_token", "apikey", "api_key")
AT_FORMAT = "an ISO 8601 time with its zone, e.g. 2025-03-03T10:00:00Z"


def _setting(name: str, default: str):
    return lambda: current_app.config.get(name) or default


# configured by ATTEST_API_RATE_LIMIT / ATTEST_API_REFUSAL_RATE_LIMIT (core.config); the constants are the defaults
limiter.shared_limit(_setting("ATTEST_API_RATE_LIMIT", API_RATE_LIMIT), scope="api")(bp)
limiter.shared_limit(_setting("ATTEST_API_REFUSAL_RATE_LIMIT", REFUSAL_RATE_LIMIT), scope="api-refused",
                     deduct_when=lambda response: response.status_code == 401)(bp)


class Refusal(Exception):
    """An answer other than 200: HTTP status, error code and a message a person at the MES can act on."""

    def __init__(self, status: int, error: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    if exc.code == 429:
        return _json(429, {"error": "rate_limited", "message": f"Too many requests from your address "
                                                               f"({exc.description}). Wait a minute and retry."},
                     {"Retry-After": "60"})
    return _json(exc.code or 500, {"error": exc.name.lower().replace(" ", "_"), "message": exc.description or ""})


@bp.errorhandler(500)
def _server_error(exc: Exception) -> Response:
    return _json(500, {"error": "internal_error", "message": "The request failed and nothing was recorded. If it "
                                                             "happens again, tell your system administrator the "
                                                             "time of the request."})


# --- authentication -------------------------------------------------------------------------------------------------


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def _why_refused(secret: str | None) -> tuple[str, str, User | None]:
    """(reason code, message, owner when the secret belongs to a token) for a secret `tokens.resolve` refused."""
    if not secret:
        return "missing", "An API token is required: send the header 'Authorization: Bearer <token>'.", None
    token = None
    if secret.startswith(tokens.PREFIX) and len(secret) <= 200:
        token = db.session.scalar(sa.select(tokens.ApiToken).where(
            tokens.ApiToken.token_hash == tokens._digest(secret)))
    if token is None:
        return "unknown", "This API token is not valid.", None
    if token.revoked_at is not None:
        return "revoked", f"This API token was revoked on {token.revoked_at.date().isoformat()}.", token.user
    if not token.is_usable():
        return "expired", f"This API token expired on {token.expires_on.isoformat()}.", token.user
    return "owner_inactive", "The account owning this API token is deactivated.", token.user


@contextmanager
def _anonymous_client() -> Iterator[None]:
    """Attribute what happens inside to an unauthenticated API client, whatever cookie the request carried."""
    session = db.session
    previous = session.info.get("audit_actor")
    session.info["audit_actor"] = audit.Actor(None, None, "anonymous API client", "api", request.remote_addr)
    try:
        yield
    finally:
        session.info["audit_actor"] = previous


def _refuse_unauthenticated(secret: str | None) -> Response:
    reason, message, owner = _why_refused(secret)
    prefix = secret[:10] if secret and secret.startswith(tokens.PREFIX) else None
    with _anonymous_client():
        audit.record_event("api.refused", subject=owner, reason=reason, token=prefix, method=request.method,
                           path=request.path)
    challenge = 'Bearer realm="Attest"' if reason == "missing" else \
        f'Bearer realm="Attest", error="invalid_token", error_description="{message}"'
    return _json(401, {"error": "missing_token" if reason == "missing" else "invalid_token", "message": message},
                 {"WWW-Authenticate": challenge})


def _authenticated(view):
    """Run `view(owner)` -> (body, audit detail) in one transaction that records the request as the owner's audit
    event, whatever its outcome (a `Refusal` is answered and recorded too)."""

    @functools.wraps(view)
    def wrapper() -> Response:
        present = [name for name in URL_TOKEN_PARAMETERS if name in request.args]
        if present:
            return _json(400, {"error": "token_in_url", "parameter": present[0], "message": (
                "API tokens are accepted only in the header 'Authorization: Bearer <token>', never in the address, "
                "which access logs record. Treat this token as disclosed: revoke it and create a new one.")})
        secret = _bearer()
        with transaction():
            token = tokens.resolve(secret)
            if token is None:
                return _refuse_unauthenticated(secret)
            owner = token.user
            with audit.acting_as(owner, channel="api"):
                try:
                    status, body, detail = 200, *view(owner)
                except Refusal as refusal:
                    status, body, detail = refusal.status, refusal.body(), {}
                audit.record_event("api.request", subject=owner, token=token.token_prefix, token_name=token.name,
                                   method=request.method, path=request.path, status=status,
                                   **{k: v[:100] for k, v in request.args.items() if k in ("user", "document", "at")},
                                   **detail)
        return _json(status, body)

    return wrapper


# --- the qualification question --------------------------------------------------------------------------------------


def _required(name: str, example: str, max_length: int) -> str:
    value = (request.args.get(name) or "").strip()
    if not value:
        raise Refusal(400, "missing_parameter", f"Parameter '{name}' is required, e.g. {name}={example}.",
                      parameter=name)
    if len(value) > max_length:
        raise Refusal(400, "invalid_parameter", f"Parameter '{name}' is at most {max_length} characters.",
                      parameter=name)
    if "\x00" in value:  # never in a name or number, and PostgreSQL cannot compare text holding one
        raise Refusal(400, "invalid_parameter", f"Parameter '{name}' must not contain a NUL character (%00).",
                      parameter=name)
    return value


def _point_in_time() -> datetime | None:
    raw = (request.args.get("at") or "").strip()
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise Refusal(400, "invalid_parameter", f"Parameter 'at' must be {AT_FORMAT} (a '+' in an offset must be "
                                                f"sent as %2B); got {raw!r}.", parameter="at")
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 lies before year 1 in UTC
        raise Refusal(400, "invalid_parameter", f"Parameter 'at' lies outside the years 1 to 9999 in UTC; got "
                                                f"{raw!r}.", parameter="at") from None
    if at > now_utc():
        raise Refusal(400, "invalid_parameter", "Parameter 'at' must not lie in the future: the answer comes from "
                                                "the training history.", parameter="at")
    return at


def _document(number: str) -> TrainingSubject | None:
    # numbers are unique whatever their case (a document's subject key is its number)
    return items.find_subject(number)


@bp.route("/qualification")
@token_only
@_authenticated
def qualification(owner: User) -> tuple[dict[str, Any], dict[str, Any]]:
    """Was `user` qualified on `document` (now, or at `at`)? Returns the body and the audit detail."""
    username = _required("user", "otto.operator", 64).lower()
    number = _required("document", "SOP-QA-001", 40)
    at = _point_in_time()
    if username == owner.username:
        needed, allowed = OWN, owner.can(OWN) or owner.can(OTHERS)
    else:
        needed, allowed = OTHERS, owner.can(OTHERS)
    if not allowed:
        raise Refusal(403, "permission_missing", f"The owner of this token lacks the permission "
                                                 f"“{PERMISSIONS[needed].label}” ({needed}) needed to ask "
                                                 f"{'about themself' if needed == OWN else 'about other people'}.",
                      permission=needed)
    person = get_by_username(username)
    if person is None:
        raise Refusal(404, "unknown_user", f"No user named '{username}'.", parameter="user")
    document = _document(number)
    if document is None:
        raise Refusal(404, "unknown_document", f"No document numbered '{number}'.", parameter="document")
    answer = qualification_of(person, document, at)
    body = {**answer.as_json(), "user_active": person.active}
    return body, {"qualified": answer.qualified, "current_revision": body["current_revision"],
                  "trained_revision": body["trained_revision"]}


@bp.route("/openapi.json")
@token_only
def openapi() -> Response:
    """The description of this API (OpenAPI 3.1): no data, so no token is needed to read it."""
    return _json(200, openapi_document())


def openapi_document() -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Error"}}}}

    def parameter(name: str, required: bool, description: str, example: str, **schema: Any) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": required, "description": description,
                "schema": {"type": "string", **schema}, "example": example}

    nullable = {"type": ["string", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Attest API", "version": "1",
                 "description": "Questions shop-floor systems ask Attest on behalf of a person holding a personal "
                                "API token. Every request is recorded in the audit trail. See docs/api.md."},
        "servers": [{"url": request.host_url.rstrip("/") + bp.url_prefix}],
        "security": [{"bearer": []}],
        "paths": {"/qualification": {"get": {
            "summary": "Was a person qualified on a controlled document, now or at a past time?",
            "parameters": [
                parameter("user", True, "Username of the person (case does not matter).", "otto.operator"),
                parameter("document", True, "Document number (case does not matter).", "SOP-QA-001"),
                parameter("at", False, f"Point in time to ask about: {AT_FORMAT}. Default: now. Not in the "
                                       f"future.", "2025-03-03T10:00:00Z", format="date-time"),
            ],
            "responses": {
                "200": {"description": "The answer", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Qualification"}}}},
                "400": error("A parameter is missing or malformed (`parameter` names it), or a token was sent in "
                             "the address."),
                "401": error("No valid token: missing, unknown, revoked, expired, or its owner is deactivated."),
                "403": error(f"The token's owner lacks {OWN} (to ask about themself) or {OTHERS} (about others)."),
                "404": error("No such user or document (`parameter` names which)."),
                "429": error("Too many requests from this address; retry after the Retry-After seconds."),
            }}}},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A personal API token (att_…) in the Authorization "
                                                          "header; never in the address."}},
            "schemas": {
                "Qualification": {"type": "object", "properties": {
                    "user": {"type": "string"}, "name": {"type": "string"}, "user_active": {"type": "boolean"},
                    "document": {"type": "string"}, "title": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"}, "qualified": {"type": "boolean"},
                    "current_revision": {**nullable, "description": "The revision governing at `at`."},
                    "trained_revision": {**nullable, "description": "The revision whose completion qualifies, "
                                                                    "else the newest one completed."},
                    "completed_at": {**nullable, "format": "date-time"},
                    "reason": {"type": "string"}}},
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"}, "parameter": {"type": "string"},
                    "permission": {"type": "string"}}},
            },
        },
    }
