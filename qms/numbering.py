"""Record numbers of quality records (change controls, deviations, CAPAs): `CC-2026-0001`, restarting each year.

A number is taken from a per-(prefix, year) counter by one atomic upsert, inside the caller's unit of work
(`core.db.transaction()`), never in a transaction of its own: the counter row stays locked until the caller commits
(PostgreSQL row lock; SQLite takes the database write lock at BEGIN IMMEDIATE), so concurrent creators queue behind
each other, and a rollback undoes the increment with everything else. Numbers of committed records are therefore
unique and gap-free, and they are committed in number order. Take the number last, just before writing the record,
to hold the lock briefly; take at most one number per transaction (or always in the same prefix order), so that two
transactions never wait for each other's counters.

The counter is not a GxP record (not versioned): the record that carries the number is.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import now_utc
from core.db import db

PREFIX_RE = re.compile(r"[A-Z]{2,8}")


class NumberSequence(db.Model):
    """The last number handed out for one prefix in one calendar year (UTC)."""

    __tablename__ = "qms_number_sequence"

    prefix: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    year: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(sa.Integer)


def format_number(prefix: str, year: int, n: int) -> str:
    """`CC-2026-0001`; past 9999 the number simply grows (`CC-2026-10000`), never truncated."""
    return f"{prefix}-{year}-{n:04d}"


def next_number(prefix: str, year: int | None = None) -> str:
    """Allocate the next number for `prefix` in `year` (default: the current UTC year) in the open unit of work.

    Raises ValueError for a prefix that is not 2 to 8 upper-case letters A-Z, and RuntimeError outside
    `core.db.transaction()` (the number would not be bound to the record's commit or rollback).
    """
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"record number prefix must be 2 to 8 upper-case letters A-Z (e.g. 'CC'), got {prefix!r}")
    if year is None:
        year = now_utc().year
    if isinstance(year, bool) or not isinstance(year, int) or not 1000 <= year <= 9999:
        raise ValueError(f"record number year must be a four-digit year, got {year!r}")
    session = db.session()
    if not session.info.get("in_unit_of_work"):
        raise RuntimeError("next_number() must run inside core.db.transaction(), in the transaction that writes "
                           "the record")
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if insert is None:
        raise RuntimeError(f"record numbers are not implemented for the {dialect} database")
    table = NumberSequence.__table__
    stmt = insert(table).values(prefix=prefix, year=year, last_value=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.prefix, table.c.year],
        set_={"last_value": table.c.last_value + 1},
    ).returning(table.c.last_value)
    n = session.execute(stmt).scalar_one()
    return format_number(prefix, year, n)
