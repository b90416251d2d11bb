"""Bulk write paths write their own audit rows in the same transaction (Continuum does not see them)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import audit, bulk
from core.audit_views import record_history
from core.db import db, transaction
from core.org import JobFunction


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
