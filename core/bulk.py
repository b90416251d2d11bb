"""Audited bulk writes.

SQLAlchemy-Continuum versions ORM flushes only; Core statements, `query.update()`, upserts and raw SQL bypass it
(../shared/STACK_NOTES.md). Every bulk path in Attest goes through these functions, which write the version rows
themselves in the same transaction, so the audit trail and `flask audit verify` cover bulk changes too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import audit
from core.db import Versioned, db

CHUNK = 2000  # rows per statement at most; fewer for wide tables (SQLite allows 32,766 bound parameters)


def _chunk(table) -> int:
    return max(1, min(CHUNK, 30_000 // max(1, len(table.columns))))


def _check(model: type) -> None:
    if not (isinstance(model, type) and issubclass(model, Versioned)):
        raise TypeError(f"{model!r} is not a versioned GxP model")


def _write_versions(model: type, ids: Sequence[Any], operation: int, tx_id: int) -> None:
    """One version row per record and transaction, as Continuum keeps it: a record already versioned in this
    (unsealed) transaction has its version row replaced by the final state, keeping "created" when it was created
    here."""
    table = model.__table__
    vtable = version_class(model).__table__
    pk = table.primary_key.columns.values()[0]
    vpk = vtable.c[pk.name]
    cols = [c.name for c in table.columns if c.name in vtable.columns]
    step = _chunk(vtable)
    for start in range(0, len(ids), step):
        chunk = ids[start:start + step]
        earlier = dict(db.session.execute(
            sa.select(vpk, vtable.c.operation_type).where(vtable.c.transaction_id == tx_id, vpk.in_(chunk))).all())
        if earlier:
            db.session.execute(sa.delete(vtable).where(vtable.c.transaction_id == tx_id, vpk.in_(list(earlier))))
        by_operation: dict[int, list[Any]] = {}
        for record_id in chunk:
            op = 0 if earlier.get(record_id) == 0 else operation
            by_operation.setdefault(op, []).append(record_id)
        for op, record_ids in by_operation.items():
            select = sa.select(*[table.c[c] for c in cols], sa.literal(tx_id, sa.BigInteger),
                               sa.literal(op, sa.SmallInteger)).where(pk.in_(record_ids))
            db.session.execute(sa.insert(vtable).from_select([*cols, "transaction_id", "operation_type"], select))
    audit.note_bulk_write(vtable.name)


def bulk_insert(model: type, rows: Iterable[dict[str, Any]]) -> list[Any]:
    """Insert many rows of a versioned model with one statement per chunk; returns their primary keys (ascending:
    rows inserted in one statement get ascending ids; asking for parameter order would make SQLite insert row by
    row)."""
    _check(model)
    rows = list(rows)
    if not rows:
        return []
    session = db.session
    session.flush()
    tx_id = audit.ensure_transaction(session)
    table = model.__table__
    pk = table.primary_key.columns.values()[0]
    ids: list[Any] = []
    step = _chunk(table)
    for start in range(0, len(rows), step):
        result = session.execute(sa.insert(table).returning(pk),
                                 rows[start:start + step])
        ids.extend(sorted(result.scalars().all()))
    _write_versions(model, ids, 0, tx_id)
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
    for start in range(0, len(ids), CHUNK):
        session.execute(sa.update(table).where(pk.in_(ids[start:start + CHUNK])).values(values),
                        execution_options={"synchronize_session": False})
    _write_versions(model, ids, 1, tx_id)
    session.expire_all()
    return len(ids)
