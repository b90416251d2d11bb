"""Audited bulk writes.

SQLAlchemy-Continuum versions ORM flushes only; Core statements, `query.update()`, upserts and raw SQL bypass it
(../shared/STACK_NOTES.md). Every bulk path in Attest goes through these functions, which write the version rows
themselves in the same transaction, so the audit trail and `flask audit verify` cover bulk changes too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import audit
from core.db import Versioned, db

CHUNK = 2000  # rows per statement at most; fewer for wide tables (SQLite allows 32,766 bound parameters)
SPANS = 200  # id ranges per statement at most (two bound parameters each)


def _chunk(table) -> int:
    return max(1, min(CHUNK, 30_000 // max(1, len(table.columns))))


def _check(model: type) -> None:
    if not (isinstance(model, type) and issubclass(model, Versioned)):
        raise TypeError(f"{model!r} is not a versioned GxP model")


def _selecting(column: Any, ids: Sequence[Any]) -> Iterator[Any]:
    """WHERE clauses that together select exactly the rows whose `column` is in `ids` (sorted, unique), each clause
    small enough for one statement: runs of consecutive integers as BETWEEN (the ids one bulk statement inserted are
    one run), the others in IN lists. Ten thousand ids in IN lists cost far more to bind than to write."""
    spans: list[tuple[int, int]] = []
    singles: list[Any] = []
    i, n = 0, len(ids)
    while i < n:
        j = i
        if type(ids[i]) is int:
            while j + 1 < n and type(ids[j + 1]) is int and ids[j + 1] == ids[j] + 1:
                j += 1
        if j - i >= 2:
            spans.append((ids[i], ids[j]))
        else:
            singles.extend(ids[i:j + 1])
        i = j + 1
    for start in range(0, len(spans), SPANS):
        yield sa.or_(*[column.between(lo, hi) for lo, hi in spans[start:start + SPANS]])
    for start in range(0, len(singles), CHUNK):
        yield column.in_(singles[start:start + CHUNK])


def _write_versions(model: type, ids: Sequence[Any], operation: int, tx_id: int) -> None:
    """One version row per record and transaction, as Continuum keeps it: a record already versioned in this
    (unsealed) transaction has its version row replaced by the final state, keeping "created" when it was created
    here. Each version row is copied from the stored record by the database (INSERT ... SELECT), so it holds exactly
    what was written."""
    table = model.__table__
    vtable = version_class(model).__table__
    pk = table.primary_key.columns.values()[0]
    vpk = vtable.c[pk.name]
    cols = [c.name for c in table.columns if c.name in vtable.columns]
    ids = sorted(set(ids))
    session = db.session
    earlier: dict[Any, int] = {}
    for where in _selecting(vpk, ids):
        earlier.update(session.execute(
            sa.select(vpk, vtable.c.operation_type).where(vtable.c.transaction_id == tx_id, where)).all())
    if earlier:
        for where in _selecting(vpk, sorted(earlier)):
            session.execute(sa.delete(vtable).where(vtable.c.transaction_id == tx_id, where))
    by_operation: dict[int, list[Any]] = {}
    for record_id in ids:
        op = 0 if earlier.get(record_id) == 0 else operation
        by_operation.setdefault(op, []).append(record_id)
    for op, record_ids in by_operation.items():
        for where in _selecting(pk, record_ids):
            select = sa.select(*[table.c[c] for c in cols], sa.literal(tx_id, sa.BigInteger),
                               sa.literal(op, sa.SmallInteger)).where(where)
            session.execute(sa.insert(vtable).from_select([*cols, "transaction_id", "operation_type"], select))
    audit.note_bulk_write(vtable.name, table.name, ids)


def bulk_insert(model: type, rows: Iterable[dict[str, Any]] | sa.Select) -> list[Any]:
    """Insert many rows of a versioned model, with their version rows; returns their primary keys, ascending.

    `rows` are dicts, written with one statement per chunk (rows inserted in one statement get ascending ids; asking
    for parameter order would make SQLite insert row by row), or a SELECT whose column labels name table columns,
    written by the database in one INSERT ... SELECT: no row passes through Python, which is what makes a fan-out to
    thousands of people cheap. Column defaults apply as they do for dicts."""
    _check(model)
    session = db.session
    table = model.__table__
    pk = table.primary_key.columns.values()[0]
    if isinstance(rows, sa.Select):
        names = [c.name for c in rows.selected_columns]
        unknown = [n for n in names if n not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
        session.flush()
        ids = sorted(session.execute(sa.insert(table).from_select(names, rows).returning(pk)).scalars().all())
    else:
        rows = list(rows)
        if not rows:
            return []
        session.flush()
        ids = []
        step = _chunk(table)
        for start in range(0, len(rows), step):
            result = session.execute(sa.insert(table).returning(pk), rows[start:start + step])
            ids.extend(sorted(result.scalars().all()))
    if ids:
        _write_versions(model, ids, 0, audit.ensure_transaction(session))
    return ids


def bulk_update(model: type, where: Any, values: dict[str, Any]) -> int:
    """UPDATE every row of `model` matching `where` with `values`; one version row per changed record.

    Bulk edits of GxP records always need a reason for change (set with transaction(reason=...))."""
    _check(model)
    session = db.session
    if not session.info.get("audit_reason"):
        raise audit.ReasonRequired(f"A reason for change is required to modify {model.__audit_label__} records "
                                   f"in bulk")
    session.flush()
    table = model.__table__
    pk = table.primary_key.columns.values()[0]
    select = sa.select(pk).where(where).order_by(pk)
    if session.get_bind().dialect.name == "postgresql":
        select = select.with_for_update()
    ids = list(session.scalars(select))
    if not ids:
        return 0
    tx_id = audit.ensure_transaction(session)
    for clause in _selecting(pk, ids):
        session.execute(sa.update(table).where(clause).values(values),
                        execution_options={"synchronize_session": False})
    _write_versions(model, ids, 1, tx_id)
    session.expire_all()
    return len(ids)
