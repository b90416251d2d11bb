"""Hostile values and the database snapshot shared by the fuzz tests (tests/web/test_fuzz_forms.py,
tests/web/test_fuzz_api.py)."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import strategies as st

from core.db import db

NASTY = [
    "", " ", "\t\n", "\x00", "a\x00b", "\u202eevil\u202c", "\u200b", "\ufeff", "\u0645\u0631\u062d\u0628\u0627",
    "Z\u0351\u0363a\u0335\u0322l\u0339go", "😀" * 3, "\ud7ff", "\U0010ffff", "'; DROP TABLE core_user; --",
    "' OR '1'='1", "1; SELECT pg_sleep(0)", "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>",
    "{{7*7}}", "{% raw %}", "%s%s%n", "../../../../etc/passwd", "javascript:alert(1)", "None", "null", "true",
    "NaN", "Infinity", "-0", "0", "-1", "1", "2147483648", "-2147483649", "9223372036854775808",
    "99999999999999999999999999", "1e308", "1.5", "0x10", "١٢٣", "0001-01-01", "9999-12-31", "2024-02-30",
    "2025-13-01", "10000-01-01", "-2025-01-01", "2025-01-01T25:61", "1970-01-01T00:00:00Z", "yesterday",
    "2025-02-29", "0000-00-00", "A" * 65, "x" * 1001, "x" * 2001, "0001-01-01T00:00", "9999-12-31T23:59",
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
]
LONG = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\u202e", "\u200b", "😀", "\x00", "<", "9"]),
                 st.integers(10_000, 12_000))
NUMBERS = st.integers(-(2**70), 2**70).map(str)
DATES = st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat()) | \
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
TEXT = st.text(max_size=40)


SPIKES = ["\x00", "\u202e", "\u200b", "\ufeff", "%00", "\\", "'", "\r\n", "\U0001f600", "\x7f", "\x1b[31m"]


def hostile_text(*known: str) -> st.SearchStrategy[str]:
    """A hostile string, or one of `known` (real ids, usernames, numbers: the records of others), as it is or with
    a control, invisible or quoting character put into it."""
    real = st.sampled_from(list(known) or ["1"])
    spiked = st.tuples(real, st.sampled_from(SPIKES), st.booleans()).map(
        lambda t: t[1] + t[0] if t[2] else t[0] + t[1])
    return st.one_of(st.sampled_from(NASTY), TEXT, NUMBERS, DATES, LONG, real, spiked)


# refusals that are themselves recorded (a denied permission, a failed signature or login, an action the record's
# state or rules refuse)
SECURITY_EVENTS = {"permission.denied", "signature.failure", "login.failure", "login.totp_failure", "totp.replay",
                   "account.locked", "csrf.refused", "action.refused"}
AUDIT_TABLES = {"audit_event", "audit_transaction", "audit_chain_head"}
_COUNT_SQL: dict[tuple[str, frozenset[str]], str] = {}


def snapshot(allowed_events: frozenset[str] = frozenset(SECURITY_EVENTS)) -> dict[str, int]:
    """Rows per table (version tables included: an update of a record writes one), and audit events other than
    `allowed_events` (by default the security events a refusal records), read outside the requests' session."""
    with db.engine.connect() as conn:
        return dict(conn.exec_driver_sql(_count_sql(conn.dialect, allowed_events)).all())


def _count_sql(dialect, allowed_events: frozenset[str]) -> str:
    """One statement counting every table, compiled once (it runs around every example)."""
    key = (dialect.name, allowed_events)
    if key not in _COUNT_SQL:
        from core.audit import AuditEvent

        counts = [sa.select(sa.literal(t.name, sa.String).label("name"), sa.func.count().label("n")).select_from(t)
                  for t in db.metadata.sorted_tables if t.name not in AUDIT_TABLES]
        counts.append(sa.select(sa.literal("audit_event (others)", sa.String).label("name"),
                                sa.func.count().label("n"))
                      .select_from(AuditEvent).where(AuditEvent.event_type.not_in(sorted(allowed_events))))
        _COUNT_SQL[key] = str(sa.union_all(*counts).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    return _COUNT_SQL[key]


def audit_events_after(event_id: int) -> list[str]:
    """Types of the audit events written after the event `event_id`, oldest first."""
    from core.audit import AuditEvent

    with db.engine.connect() as conn:
        return list(conn.scalars(sa.select(AuditEvent.event_type).where(AuditEvent.id > event_id)
                                 .order_by(AuditEvent.id)))


def last_audit_event_id() -> int:
    from core.audit import AuditEvent

    with db.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0)))
