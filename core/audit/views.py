"""Reading the audit trail: a record's history, the global audit log for auditors, and its CSV export."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, render_template, request
from sqlalchemy_continuum import version_class

from core import audit
from core.audit import EVENT_LABELS, AuditEvent, AuditTransaction
from core.auth.access import permission_required
from core.db import db, transaction, versioned_classes

bp = Blueprint("audit", __name__, url_prefix="/audit")

OPERATIONS = {0: "Created", 1: "Changed", 2: "Deleted"}
PAGE_SIZE = 50
EXPORT_LIMIT = 100_000


def field_label(model: type, column: str) -> str:
    col = model.__table__.columns.get(column)
    if col is None:  # a column a migration retired from the live table: its version table keeps it, and its label
        col = version_class(model).__table__.columns.get(column)
    if col is not None and col.info.get("label"):
        return col.info["label"]
    return column.replace("_", " ").capitalize()


def display(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        from core.web import localtime

        return localtime(value)
    return str(value)


@dataclass
class Change:
    model: type
    record_id: Any
    action: str
    fields: list[tuple[str, str, str]]

    @property
    def record_type(self) -> str:
        return self.model.__audit_label__


@dataclass
class Entry:
    tx: AuditTransaction
    changes: list[Change] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)


def _data_columns(model: type) -> list[str]:
    vcls = version_class(model)
    return [c.name for c in vcls.__table__.columns if c.name not in ("transaction_id", "operation_type")]


def _pk(model: type) -> str:
    return model.__table__.primary_key.columns.keys()[0]


def _reference_label(model: type, column: str, value: Any) -> str | None:
    """A foreign key shown as the referenced record's title (ALCOA+ legible), e.g. 'Site BSL' instead of '1'."""
    col = model.__table__.columns.get(column)
    if value is None or col is None or not col.foreign_keys:
        return None
    target_table = next(iter(col.foreign_keys)).column.table.name
    target = record_types().get(target_table)
    if target is None:
        return None
    obj = db.session.get(target, value)
    return f"{obj.audit_title()} (id {value})" if obj is not None else f"id {value}"


def _show(model: type, column: str, value: Any) -> str:
    return _reference_label(model, column, value) or display(value)


def _change(model: type, version: Any, previous: Any | None) -> Change:
    cols = _data_columns(model)
    op = version.operation_type
    pk = _pk(model)
    fields = []
    for col in cols:
        new = getattr(version, col)
        old = getattr(previous, col) if previous is not None else None
        if op == 2 or col == pk:
            continue
        if previous is None and new is None:
            continue
        if previous is not None and old == new:
            continue
        fields.append((field_label(model, col), _show(model, col, old) if previous is not None else "",
                       _show(model, col, new)))
    return Change(model, getattr(version, pk), OPERATIONS.get(op, str(op)), fields)


def record_history(model: type, record_id: Any) -> list[Entry]:
    """Every audited change of one record, oldest first, with field labels and old -> new values."""
    vcls = version_class(model)
    pk = _pk(model)
    rows = db.session.execute(
        sa.select(vcls, AuditTransaction)
        .join(AuditTransaction, AuditTransaction.id == vcls.transaction_id)
        .where(getattr(vcls, pk) == record_id)
        .order_by(vcls.transaction_id)
    ).all()
    entries = []
    previous = None
    for version, tx in rows:
        entries.append(Entry(tx, [_change(model, version, previous)]))
        previous = version
    return entries


def events_for_user(user_id: int, limit: int = 200) -> list[tuple[AuditEvent, AuditTransaction]]:
    return db.session.execute(
        sa.select(AuditEvent, AuditTransaction)
        .join(AuditTransaction, AuditTransaction.id == AuditEvent.transaction_id)
        .where(AuditEvent.subject_user_id == user_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    ).all()


def record_types(*, former: bool = False) -> dict[str, type]:
    """Table name -> versioned model; with `former`, also the names renamed tables had (transactions recorded before
    a rename name the table as it was then)."""
    types = {cls.__table__.name: cls for cls in versioned_classes()}
    if former:
        for cls in list(types.values()):
            types.update({name: cls for name in cls.__dict__.get("__audit_former_tables__", ())})
    return types


def _midnight(day: date, zone, days_after: int = 0) -> datetime | None:
    """The start of `day` (plus `days_after`) in `zone`, in UTC; None where that falls off the calendar (before year
    1 or after 9999), which bounds nothing."""
    try:
        return datetime.combine(day + timedelta(days=days_after), time.min, zone).astimezone(UTC)
    except OverflowError:
        return None


@dataclass
class Filters:
    username: str = ""
    record_type: str = ""
    event_type: str = ""
    date_from: date | None = None
    date_to: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> Filters:
        f = cls(username=(args.get("user") or "").strip().lower(), record_type=args.get("record_type") or "",
                event_type=args.get("event_type") or "")
        if f.record_type and f.record_type not in record_types():
            f.errors["record_type"] = "Record type is not one of the listed types."
            f.record_type = ""
        if f.event_type and f.event_type not in EVENT_LABELS:
            f.errors["event_type"] = "Event type is not one of the listed types."
            f.event_type = ""
        for name in ("date_from", "date_to"):
            raw = (args.get(name) or "").strip()
            if raw:
                try:
                    setattr(f, name, date.fromisoformat(raw))
                except ValueError:
                    f.errors[name] = "Date must be written as YYYY-MM-DD."
        if f.date_from and f.date_to and f.date_to < f.date_from:
            f.errors["date_to"] = "'To' date must not be before the 'from' date."
        return f

    def apply(self, stmt):
        from core.web import user_zone

        tx = AuditTransaction
        stmt = stmt.where(tx.chain_seq.is_not(None))
        if self.username:
            stmt = stmt.where(tx.username == self.username)
        if self.record_type:
            model = record_types()[self.record_type]
            names = [self.record_type, *model.__dict__.get("__audit_former_tables__", ())]
            stmt = stmt.where(sa.or_(*[tx.record_types.contains(f",{name},") for name in names]))
        if self.event_type:
            stmt = stmt.where(sa.exists().where(AuditEvent.transaction_id == tx.id)
                              .where(AuditEvent.event_type == self.event_type))
        zone = user_zone()
        if self.date_from and (start := _midnight(self.date_from, zone)) is not None:
            stmt = stmt.where(tx.issued_at >= start)
        if self.date_to and (end := _midnight(self.date_to, zone, days_after=1)) is not None:
            stmt = stmt.where(tx.issued_at < end)
        return stmt

    def query_args(self) -> dict[str, str]:
        out = {"user": self.username, "record_type": self.record_type, "event_type": self.event_type,
               "date_from": self.date_from.isoformat() if self.date_from else "",
               "date_to": self.date_to.isoformat() if self.date_to else ""}
        return {k: v for k, v in out.items() if v}


def build_entries(txs: list[AuditTransaction]) -> list[Entry]:
    """Entries for a page of transactions: their security events and their record changes with old values."""
    entries = {tx.id: Entry(tx) for tx in txs}
    if not entries:
        return []
    ids = list(entries)
    for ev in db.session.scalars(sa.select(AuditEvent).where(AuditEvent.transaction_id.in_(ids))
                                 .order_by(AuditEvent.id)):
        entries[ev.transaction_id].events.append(ev)
    types = record_types(former=True)
    touched: set[str] = set()
    for tx in txs:
        touched.update(t for t in (tx.record_types or "").split(",") if t)
    models = {types[table] for table in touched if table in types}
    for model in sorted(models, key=lambda cls: cls.__table__.name):
        vcls = version_class(model)
        pk = _pk(model)
        for version in db.session.scalars(sa.select(vcls).where(vcls.transaction_id.in_(ids))):
            previous = db.session.scalars(
                sa.select(vcls).where(getattr(vcls, pk) == getattr(version, pk))
                .where(vcls.transaction_id < version.transaction_id)
                .order_by(vcls.transaction_id.desc()).limit(1)
            ).first()
            entries[version.transaction_id].changes.append(_change(model, version, previous))
    return [entries[i] for i in ids]


@bp.route("/")
@permission_required("audit.view")
def log():
    filters = Filters.from_args(request.args)
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    stmt = filters.apply(sa.select(AuditTransaction))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery()))
    txs = list(db.session.scalars(stmt.order_by(AuditTransaction.chain_seq.desc())
                                  .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    return render_template("core/audit/log.html", entries=build_entries(txs), filters=filters, page=page,
                           total=total, pages=max(1, -(-total // PAGE_SIZE)), types=record_types(),
                           event_labels=EVENT_LABELS), 422 if filters.errors else 200


CSV_HEADER = ["transaction", "chain_position", "time_utc", "username", "printed_name", "channel", "remote_address",
              "reason", "kind", "record_type", "record_id", "action", "field", "old_value", "new_value"]


@bp.route("/export.csv")
@permission_required("audit.export")
def export_csv():
    filters = Filters.from_args(request.args)
    if filters.errors:
        return render_template("core/error.html", code=422, title="Invalid filter",
                               message=" ".join(f"{k}: {v}" for k, v in filters.errors.items())), 422
    stmt = filters.apply(sa.select(AuditTransaction)).order_by(AuditTransaction.chain_seq).limit(EXPORT_LIMIT)
    txs = list(db.session.scalars(stmt))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_HEADER)
    for start in range(0, len(txs), 500):
        for entry in build_entries(txs[start:start + 500]):
            tx = entry.tx
            base = [tx.id, tx.chain_seq, tx.issued_at.isoformat(), tx.username or "", tx.printed_name, tx.channel,
                    tx.remote_addr or "", tx.reason or ""]
            for ev in entry.events:
                writer.writerow([*map(_csv_safe, base), "event", "", ev.subject_username or "",
                                 EVENT_LABELS.get(ev.event_type, ev.event_type), "", "", _csv_safe(ev.detail)])
            for ch in entry.changes:
                for label, old, new in ch.fields or [("", "", "")]:
                    writer.writerow([*map(_csv_safe, base), "record", ch.record_type, ch.record_id, ch.action,
                                     label, _csv_safe(old), _csv_safe(new)])
    with transaction():
        audit.record_event("audit.exported", filters=json.dumps(filters.query_args()), transactions=len(txs))
    return Response(buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=attest-audit-log.csv"})


def _csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection) in free-text values."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value

