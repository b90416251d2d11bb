"""OQ steps for the audit trail: content, reason for change, no deletion, append-only guards, tamper detection and
the audit log with its export."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import audit, clock
from core.audit import AuditTransaction
from core.audit.views import record_history
from core.auth.models import User
from core.db import db, transaction
from core.testing.pages import events, field_errors, fresh
from features.steps.access import account, client_of, user_form
from features.support.inspection import as_application, scalar_count, text_of
from testkit.plugin import post_form

CHAIN_SEQ_RE = re.compile(r'<td class="text-muted small">(\d+)</td>')


@given(parsers.parse('the clock reads "{when}" UTC'))
def clock_reads(evidence, when):
    clock.freeze(datetime.fromisoformat(when).replace(tzinfo=UTC))
    evidence.record("Server clock", f"{when} UTC")


@when(parsers.parse('"{username}" changes the printed name of "{target}" to "{name}" giving the reason "{reason}", '
                    'the request also claiming a time of "{claimed}" and another user'))
def edit_with_reason(app, ctx, evidence, username, target, name, reason, claimed):
    user = account(ctx, target)
    ctx.before = fresh(user).full_name
    data = user_form(user, sorted(user.role_codes), reason=reason, full_name=name, issued_at=claimed,
                     user_id=str(user.id), username_of_actor=target)
    ctx.response = post_form(client_of(app, ctx, username), f"/admin/users/{user.id}/edit", data)
    ctx.target = target
    evidence.record("Request", f"POST /admin/users/{user.id}/edit (extra fields issued_at={claimed}, "
                               f"user_id={user.id})")


@then("the change is saved")
def change_saved(ctx, evidence):
    user = fresh(account(ctx, ctx.target))
    evidence.actual(f"HTTP {ctx.response.status_code}; printed name now '{user.full_name}'")
    assert ctx.response.status_code == 302 and user.full_name != ctx.before


@then(parsers.parse("the account's audit trail shows \"{label}\" changed from \"{old}\" to \"{new}\""))
def trail_shows_change(app, ctx, evidence, label, old, new):
    user = account(ctx, ctx.target)
    last = record_history(User, user.id)[-1]
    fields = [f for change in last.changes for f in change.fields]
    page = text_of(client_of(app, ctx, "admin.one").get(f"/admin/users/{user.id}"))
    row = f"{label} {old} {new}"
    evidence.actual(f"last audited change: {fields}; the account's page shows the row '{row}': {row in page}")
    evidence.record("Audit transaction", last.tx.id)
    assert (label, old, new) in fields and row in page
    ctx.entry = last


@then(parsers.parse('the audit entry names "{username}" with printed name "{printed}", the server time "{when}" UTC '
                    'and the reason "{reason}"'))
def entry_names(ctx, evidence, username, printed, when, reason):
    tx = ctx.entry.tx
    evidence.actual(f"user {tx.username} ({tx.printed_name}), channel {tx.channel}, address {tx.remote_addr}, "
                    f"time {tx.issued_at.isoformat()}, reason '{tx.reason}'")
    assert (tx.username, tx.printed_name, tx.reason, tx.channel) == (username, printed, reason, "web")
    assert tx.issued_at == datetime.fromisoformat(when).replace(tzinfo=UTC)


@when(parsers.parse('"{username}" changes the printed name of "{target}" to "{name}" without a reason'))
def edit_without_reason(app, ctx, evidence, username, target, name):
    user = account(ctx, target)
    ctx.transactions = scalar_count(AuditTransaction)
    ctx.response = post_form(client_of(app, ctx, username), f"/admin/users/{user.id}/edit",
                             user_form(user, sorted(user.role_codes), reason="", full_name=name))
    ctx.target = target


@then("the edit is refused naming the reason for change")
def edit_refused(ctx, evidence):
    errors = field_errors(ctx.response)
    evidence.actual(f"HTTP {ctx.response.status_code}: {errors}")
    assert ctx.response.status_code == 422 and any("reason" in e.lower() for e in errors)


@then(parsers.parse('"{username}" keeps the printed name "{name}" and no audit transaction was added'))
def name_kept(ctx, evidence, username, name):
    user = fresh(account(ctx, username))
    added = scalar_count(AuditTransaction) - ctx.transactions
    evidence.actual(f"printed name '{user.full_name}'; audit transactions added: {added}")
    assert user.full_name == name and added == 0


@when(parsers.parse('the application is asked to delete the account "{username}"'))
def delete_account(ctx, evidence, username):
    user = fresh(account(ctx, username))
    try:
        with transaction(reason="Clean-up"):
            db.session.delete(user)
            db.session.flush()
    except audit.DeleteRefused as exc:
        ctx.refusal = str(exc)
    else:
        ctx.refusal = None
    db.session.expire_all()


@then("the deletion is refused because GxP records are retired, never deleted")
def delete_refused(ctx, evidence):
    exists = db.session.get(User, ctx.accounts["alex.auditor"].id) is not None
    evidence.actual(f"refused: {ctx.refusal}; account still exists: {exists}")
    assert ctx.refusal and "retired, never deleted" in ctx.refusal and exists


@then("no page or route of the application accepts DELETE, PUT or PATCH")
def no_destructive_routes(app, evidence):
    offending = sorted(f"{rule.rule} {sorted(rule.methods & {'DELETE', 'PUT', 'PATCH'})}"
                       for rule in app.url_map.iter_rules() if rule.methods & {"DELETE", "PUT", "PATCH"})
    evidence.actual(f"{len(list(app.url_map.iter_rules()))} routes; accepting DELETE/PUT/PATCH: {offending or 'none'}")
    assert offending == []


@given("the audit trail integrity check passes")
def verify_passes_first(evidence):
    result = audit.verify()
    evidence.record("Integrity check", f"{result.transactions} transactions: {'intact' if result.ok else 'FAILED'}")
    assert result.ok, result.chain_error or result.record_problems


@when(parsers.parse('the printed name of "{username}" is changed directly in the database, bypassing the application'))
def sql_change_user(ctx, evidence, username):
    from features.support.inspection import direct_sql

    user = account(ctx, username)
    direct_sql("UPDATE core_user SET full_name = :n WHERE id = :id", n="Mallory", id=user.id)
    evidence.record("Direct SQL", f"UPDATE core_user SET full_name = 'Mallory' WHERE id = {user.id}")


@then(parsers.parse('the integrity check fails naming the user record of "{username}" and the field "{field}"'))
def verify_names_user(ctx, evidence, username, field):
    result = audit.verify()
    evidence.actual("; ".join(result.record_problems) or (result.chain_error or "audit trail intact"))
    expected = f"core_user id={account(ctx, username).id} was changed outside the application (fields: {field})"
    assert not result.ok and expected in result.record_problems


@when(parsers.parse('a database superuser changes the printed name in the oldest version row of "{username}"'))
def superuser_edit(ctx, evidence, username):
    from core.testing.tamper import superuser

    user = account(ctx, username)
    db.session.rollback()
    with superuser(db.engine) as conn:
        ctx.tx_id = conn.execute(sa.text("SELECT min(transaction_id) FROM core_user_version WHERE id = :id"),
                                 {"id": user.id}).scalar_one()
        conn.execute(sa.text("UPDATE core_user_version SET full_name = 'Mallory' WHERE id = :id "
                             "AND transaction_id = :tx"), {"id": user.id, "tx": ctx.tx_id})
    db.session.expire_all()
    evidence.record("Superuser change", f"core_user_version id={user.id}, transaction {ctx.tx_id}")


@then("the integrity check fails naming the transaction whose content no longer matches its hash")
def chain_broken(ctx, evidence):
    result = audit.verify()
    evidence.actual(result.chain_error or "audit trail intact")
    assert result.chain_error and f"chain broken at transaction {ctx.tx_id}" in result.chain_error
    assert "no longer matches its hash" in result.chain_error


@when("the application's database account tries to update and delete audit transactions, audit events and version "
      "rows")
def try_audit_changes(ctx, evidence):
    with transaction():
        audit.record_event("login.failure", subject_username="nobody")
    db.session.rollback()
    statements = ["UPDATE audit_transaction SET reason = 'edited'",
                  "DELETE FROM audit_transaction",
                  "UPDATE audit_event SET event_type = 'logout'",
                  "DELETE FROM audit_event",
                  "UPDATE core_user_version SET full_name = 'Mallory'",
                  "DELETE FROM core_user_version",
                  "UPDATE audit_chain_head SET seq = 0",
                  "DELETE FROM audit_chain_head"]
    ctx.outcomes = as_application(statements)
    for sql, outcome in ctx.outcomes.items():
        evidence.record(sql, outcome)


@then("the database refuses every statement as append-only")
def all_refused(ctx, evidence):
    refused = [sql for sql, outcome in ctx.outcomes.items() if "append-only" in outcome]
    evidence.actual(f"{len(refused)} of {len(ctx.outcomes)} statements refused as append-only")
    assert len(refused) == len(ctx.outcomes)


@then("the audit trail integrity check passes")
def verify_passes(evidence):
    result = audit.verify()
    evidence.actual(f"{result.transactions} transactions, {result.version_rows} version rows, {result.records} "
                    f"records: " + ("audit trail intact" if result.ok else f"FAILED {result.chain_error} "
                                                                        f"{result.record_problems}"))
    assert result.ok


@when(parsers.parse('"{username}" filters the audit log by the user "{who}"'))
def filter_log(app, ctx, evidence, username, who):
    ctx.query = f"user={who}"
    response = client_of(app, ctx, username).get(f"/audit/?{ctx.query}")
    assert response.status_code == 200
    ctx.shown = {int(n) for n in CHAIN_SEQ_RE.findall(response.get_data(as_text=True))}
    evidence.record("Audit log", f"/audit/?{ctx.query}: {len(ctx.shown)} transactions shown")


@when(parsers.parse('"{username}" exports the filtered audit log as CSV'))
def export_log(app, ctx, evidence, username):
    ctx.export = client_of(app, ctx, username).get(f"/audit/export.csv?{ctx.query}")
    ctx.exporter = username
    evidence.record("Export", f"HTTP {ctx.export.status_code}, {ctx.export.mimetype}, "
                              f"{ctx.export.headers.get('Content-Disposition')}")


@then("the export lists exactly the transactions the filtered log shows, with time, user, reason, field, old and new "
      "value")
def export_matches(ctx, evidence):
    rows = list(csv.DictReader(io.StringIO(ctx.export.get_data(as_text=True))))
    exported = {int(r["chain_position"]) for r in rows}
    columns = list(rows[0]) if rows else []
    evidence.actual(f"{len(rows)} CSV rows covering transactions {sorted(exported)}; log showed {sorted(ctx.shown)}; "
                    f"columns {columns}")
    assert ctx.export.status_code == 200 and ctx.export.mimetype == "text/csv"
    assert ctx.shown and exported == ctx.shown
    assert {"time_utc", "username", "reason", "field", "old_value", "new_value"} <= set(columns)
    assert {r["username"] for r in rows} == {"admin.one"}


@then(parsers.parse('the export is recorded as an audit event with its filter under "{username}"'))
def export_recorded(ctx, evidence, username):
    [event] = events("audit.exported")
    tx = db.session.get(AuditTransaction, event.transaction_id)
    evidence.actual(f"'audit.exported' by {tx.username}: {event.detail}")
    assert tx.username == username and json.loads(json.loads(event.detail)["filters"]) == {"user": "admin.one"}


