"""Errors a user can act on. Views turn them into a message naming the field and the rule; nothing is written."""

from __future__ import annotations

REFUSALS = "attest_refusals"  # flask.g: the refusals of the current request that core.web records after it


class AttestError(Exception):
    """Base of refusals that carry a user-facing message."""

    status = 400
    recorded = False  # a refused attempt to change a record against its state or its rules (recorded, see below)

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        if self.recorded:
            _note(self)


def _note(refusal: AttestError) -> None:
    """Keep the refusal of a POST for the security event core.web writes once the request's own unit of work has
    rolled back (what the refusal stopped is not written; that it was tried is)."""
    from flask import g, has_request_context, request

    if has_request_context() and request.method == "POST":
        g.setdefault(REFUSALS, []).append(refusal)


class ValidationError(AttestError):
    """Bad input: `field` names the form field, `message` the rule that was broken."""

    status = 422

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class InvalidTransition(AttestError):
    """An action that the record's current state does not allow."""

    status = 409
    recorded = True


class NotPermitted(AttestError):
    """An action the person's roles allow but the record's rules do not (segregation of duties, another's record)."""

    status = 403
    recorded = True
