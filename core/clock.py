"""The one clock of Attest.

Every timestamp the system records comes from `now_utc()`, so that tests can freeze time in one place and an
inspector can be told exactly where record times come from (the application server's NTP-synchronised clock).
"""

from __future__ import annotations

from datetime import UTC, datetime

_frozen: datetime | None = None


def now_utc() -> datetime:
    """Current time as a timezone-aware UTC datetime."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC)


def freeze(at: datetime | None) -> None:
    """Freeze (or with None, release) the clock. Used by tests and validation protocols only."""
    global _frozen
    if at is not None and at.tzinfo is None:
        raise ValueError("freeze() needs a timezone-aware datetime")
    _frozen = at.astimezone(UTC) if at is not None else None
