"""Bulk write paths write their own audit rows in the same transaction (Continuum does not see them)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import IntEnum

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import audit, bulk
from core.audit.views import record_history
from core.db import db, transaction
from core.org import JobFunction
from core.testing.tamper import superuser


def _verify_ok(app):
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    return result.output


def test_bulk_insert_writes_a_created_version_per_record_and_verify_passes(app):
    with transaction():
        ids = bulk.bulk_insert(JobFunction, [{"code": f"JF{i}", "name": f"Function {i}", "active": True}
                                             for i in range(1200)])
    assert len(ids) == 1200
    vcls = version_class(JobFunction)
    ops = db.session.execute(sa.select(vcls.operation_type, sa.func.count()).group_by(vcls.operation_type)).all()
    assert ops == [(0, 1200)]
    history = record_history(JobFunction, ids[-1])
    assert history[0].changes[0].action == "Created"
    assert ("Name", "", "Function 1199") in history[0].changes[0].fields
    _verify_ok(app)


def test_bulk_update_writes_old_and_new_values_with_reason_and_verify_passes(app):
    with transaction():
        ids = bulk.bulk_insert(JobFunction, [{"code": f"B{i}", "name": f"B {i}", "active": True} for i in range(10)])
    with transaction(reason="Functions merged into the new packaging line"):
        changed = bulk.bulk_update(JobFunction, JobFunction.code.in_(["B1", "B2", "B3"]), {"active": False})
    assert changed == 3
    entry = record_history(JobFunction, ids[2])[-1]
    assert entry.tx.reason == "Functions merged into the new packaging line"
    assert entry.changes[0].fields == [("Active", "Yes", "No")]
    output = _verify_ok(app)
    assert "checked 2 transactions" in output


def test_bulk_update_without_reason_is_refused_and_changes_nothing(app):
    with transaction():
        bulk.bulk_insert(JobFunction, [{"code": "C1", "name": "C", "active": True}])
    with pytest.raises(audit.ReasonRequired), transaction():
        bulk.bulk_update(JobFunction, JobFunction.code == "C1", {"active": False})
    assert db.session.scalar(sa.select(JobFunction.active).where(JobFunction.code == "C1")) is True


def test_a_failed_bulk_transaction_leaves_neither_records_nor_audit_rows(app):
    with pytest.raises(sa.exc.IntegrityError), transaction():
        bulk.bulk_insert(JobFunction, [{"code": "DUP", "name": "x", "active": True},
                                       {"code": "DUP", "name": "y", "active": True}])
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobFunction)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(version_class(JobFunction))) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(audit.AuditTransaction)) == 0
    _verify_ok(app)


def test_a_record_created_and_changed_in_bulk_in_one_transaction_has_one_version_with_its_final_state(app):
    with transaction(reason="Created then retired in one step"):
        ids = bulk.bulk_insert(JobFunction, [{"code": "ONE", "name": "Once", "active": True}])
        bulk.bulk_update(JobFunction, JobFunction.id.in_(ids), {"active": False})
    vcls = version_class(JobFunction)
    rows = db.session.execute(sa.select(vcls.operation_type, vcls.active)).all()
    assert rows == [(0, False)]
    _verify_ok(app)


def _version_rows(ids):
    vcls = version_class(JobFunction)
    return {row.id: row for row in db.session.execute(
        sa.select(vcls.id, vcls.code, vcls.name, vcls.active, vcls.operation_type, vcls.transaction_id)
        .where(vcls.id.in_(ids))).all()}


def test_bulk_insert_from_a_select_versions_each_stored_row_with_its_defaults_and_verify_passes(app):
    with transaction():
        bulk.bulk_insert(JobFunction, [{"code": f"S{i}", "name": f"Source {i}", "active": True} for i in range(30)])
    jf = JobFunction.__table__.c
    with transaction():
        ids = bulk.bulk_insert(JobFunction, sa.select((jf.code + "-copy").label("code"), jf.name.label("name"))
                               .where(jf.code.like("S%")).order_by(jf.id))
    assert len(ids) == 30 and ids == sorted(ids)
    live = {row.id: row for row in db.session.execute(
        sa.select(jf.id, jf.code, jf.name, jf.active).where(jf.id.in_(ids))).all()}
    versions = _version_rows(ids)
    assert {v.operation_type for v in versions.values()} == {0}
    assert all(live[i].active is True for i in ids)  # the column default applies as it does for dicts
    assert {i: tuple(live[i]) for i in ids} == {i: (v.id, v.code, v.name, v.active) for i, v in versions.items()}
    _verify_ok(app)


def test_bulk_insert_from_an_empty_select_writes_nothing_and_opens_no_audit_transaction(app):
    jf = JobFunction.__table__.c
    with transaction():
        assert bulk.bulk_insert(JobFunction, sa.select(jf.code.label("code"), jf.name.label("name"))) == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(audit.AuditTransaction)) == 0


def test_a_bulk_select_naming_an_unknown_column_is_refused(app):
    with pytest.raises(ValueError, match="no column"), transaction():
        bulk.bulk_insert(JobFunction, sa.select(sa.literal("X").label("code"), sa.literal("Y").label("title")))


def test_bulk_update_of_scattered_records_versions_exactly_those_records(app):
    with transaction():
        ids = bulk.bulk_insert(JobFunction, [{"code": f"G{i:03d}", "name": f"G {i}", "active": True}
                                             for i in range(100)])
    chosen = ids[5:40] + ids[41:43] + ids[50:100:3]  # a long run, a pair and scattered ids
    with transaction(reason="Functions retired"):
        assert bulk.bulk_update(JobFunction, JobFunction.id.in_(chosen), {"active": False}) == len(chosen)
    assert set(db.session.scalars(sa.select(JobFunction.id).where(JobFunction.active.is_(False)))) == set(chosen)
    vcls = version_class(JobFunction)
    assert set(db.session.scalars(sa.select(vcls.id).where(vcls.operation_type == 1))) == set(chosen)
    _verify_ok(app)


def test_records_created_and_changed_in_bulk_in_one_transaction_keep_one_created_version_each(app):
    with transaction(reason="Created, then some retired at once"):
        ids = bulk.bulk_insert(JobFunction, [{"code": f"H{i:03d}", "name": f"H {i}", "active": True}
                                             for i in range(60)])
        chosen = ids[10:30] + ids[40:60:4]
        bulk.bulk_update(JobFunction, JobFunction.id.in_(chosen), {"active": False})
    versions = _version_rows(ids)
    assert len(versions) == 60
    assert {v.operation_type for v in versions.values()} == {0}
    assert {i for i, v in versions.items() if v.active is False} == set(chosen)
    _verify_ok(app)


def test_a_tampered_bulk_written_version_row_breaks_the_chain(app):
    with transaction():
        ids = bulk.bulk_insert(JobFunction, [{"code": f"T{i}", "name": f"T {i}", "active": True} for i in range(50)])
    tx_id = _version_rows(ids)[ids[25]].transaction_id
    with superuser(db.engine) as conn:
        conn.exec_driver_sql(f"UPDATE core_job_function_version SET name = 'Forged' WHERE id = {ids[25]}")
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert f"chain broken at transaction {tx_id}" in result.output


class _Text:
    def __str__(self) -> str:
        return "text of an unknown type"


def test_canonical_lines_are_unchanged_json_of_the_non_null_columns_byte_for_byte():
    """Sealing and verifying encode rows without building the JSON document; the text (hence every hash already in a
    chain) is exactly the documented definition, for every type a database driver returns."""
    row = (7, 3, "2026-01-05 08:00:00.000000", None, "qa", 'Quality "A" é\n', None, "web", None, ",core_site,")
    assert audit._tx_repr(row) == (
        '["tx",{"id":7,"chain_seq":3,"issued_at":"2026-01-05 08:00:00.000000","username":"qa",'
        '"printed_name":"Quality \\"A\\" é\\n","channel":"web","record_types":",core_site,"}]')
    values = [0, -5, 2**70, True, False, 1.25, 1e300, float("inf"), float("nan"), "", "plain", "\x00\x1f\u2028😀\\",
              date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, 6), datetime(2026, 1, 2, tzinfo=UTC),
              Decimal("1.10"), b"\x00\xff", memoryview(b"ab"), {"k": [1, "é"]}, [1, None], IntEnum("E", "A").A,
              _Text(), None]
    columns = ("a", "b", 'c"é', "d", "e")
    encode = audit._line_encoder("some_table", columns)
    rng = random.Random(4)
    for _ in range(3000):
        row = [rng.choice(values) for _ in range(rng.randint(0, 6))]
        assert encode(row) == audit._canonical_line("some_table", columns, row)


def test_the_orm_may_not_change_a_record_written_in_bulk_in_the_same_unit_of_work(app):
    """Its version row would be written twice: refused with a clear error, and the whole unit of work rolls back."""
    with pytest.raises(audit.ChangedAfterBulkWrite, match="written in bulk in this unit of work"), transaction():
        [job_id] = bulk.bulk_insert(JobFunction, [{"code": "BULK-1", "name": "Written in bulk", "active": True}])
        db.session.get(JobFunction, job_id).name = "Changed by the ORM"
        db.session.flush()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobFunction)) == 0
    with transaction():  # the next unit of work may change it
        [job_id] = bulk.bulk_insert(JobFunction, [{"code": "BULK-2", "name": "Written in bulk", "active": True}])
    with transaction(reason="Renamed"):
        db.session.get(JobFunction, job_id).name = "Changed by the ORM"
    _verify_ok(app)
