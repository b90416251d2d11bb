"""The one clock of Attest.

Every timestamp the system records comes from `now_utc()`, so that tests can freeze time in one place and an
inspector can be told exactly where record times come from (the application server's NTP-synchronised clock).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime

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


def today_utc() -> date:
    """Today by the one clock, so due dates follow a frozen clock in tests and protocols."""
    return now_utc().date()


def add_months(day: date, months: int) -> date:
    """`day` plus `months` calendar months, on the last day of the month when the day does not exist (31 Jan + 1
    month = 28/29 Feb): a periodic review or a requalification is never due later than the interval says."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
