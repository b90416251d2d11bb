"""Errors a user can act on. Views turn them into a message naming the field and the rule; nothing is written."""

from __future__ import annotations


class AttestError(Exception):
    """Base of refusals that carry a user-facing message."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(AttestError):
    """Bad input: `field` names the form field, `message` the rule that was broken."""

    status = 422

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class InvalidTransition(AttestError):
    """An action that the record's current state does not allow."""

    status = 409


class NotPermitted(AttestError):
    status = 403
