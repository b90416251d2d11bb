"""The rules every signed quality record follows: documents, change controls, deviations and CAPAs.

One copy, so that a permission refusal, a required field, a stale page or an illegal transition reads and behaves
the same whichever record a person works on. The signed and unsigned state transitions themselves are declared in
each record type's lifecycle (`signatures.lifecycle`), which checks them with the same messages; these rules serve the
other use cases (editing a draft, planning actions, ...). Each rule raises one of the `core.errors` exceptions, which
the caller's `core.db.transaction()` turns into a rollback of everything the call wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from core.clock import add_months, today_utc  # noqa: F401 (the rules' dates, re-exported)
from core.errors import InvalidTransition, ValidationError
from signatures.lifecycle import require  # noqa: F401  (the one permission check; quality records import it here)

MAX_TEXT_CHARS = 4000


class StatefulRecord(Protocol):
    """A record with a lifecycle status and an optimistic-locking row version (a revision, change control, ...)."""

    status: str
    row_version: int

    @property
    def status_label(self) -> str: ...

    def audit_title(self) -> str: ...


def required_text(field: str, value: str | None, label: str, *, limit: int = MAX_TEXT_CHARS) -> str:
    """The stripped text of a required field: blank and over-long input are refused, never stored or cut."""
    value = (value or "").strip()
    if not value:
        raise ValidationError(field, f"{label} is required.")
    if len(value) > limit:
        raise ValidationError(field, f"{label} must be at most {limit:,} characters.")
    return value


def whole_number(field: str, value: object, label: str, minimum: int, maximum: int) -> int:
    """An int within bounds; a bool (an int to Python) or a float from a JSON body is refused, not coerced."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(field, f"{label} must be a whole number from {minimum} to {maximum}.")
    return value


def check_fresh(record: StatefulRecord, expected_row_version: int | str | None) -> None:
    """Refuse an action taken on a page that showed an older row version: the person must see what they sign."""
    if expected_row_version is None or str(expected_row_version) != str(record.row_version):
        raise InvalidTransition(f"{record.audit_title()} changed since the page was loaded; reload it and check "
                                f"it again.")


def check_status(record: StatefulRecord, allowed: str | Iterable[str], action: str, *, noun: str,
                 labels: Mapping[str, str]) -> None:
    """Refuse a transition the record's lifecycle does not allow from its current status, saying which statuses
    would allow it (`noun` names the kind of record, `labels` its status labels)."""
    allowed = (allowed,) if isinstance(allowed, str) else tuple(allowed)
    if record.status not in allowed:
        raise InvalidTransition(f"Cannot {action} {record.audit_title()}: it is {record.status_label}; only a {noun} "
                                f"in {' or '.join(labels[s] for s in allowed)} can be.")
