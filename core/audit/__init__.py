"""The audit trail: who, when, where and why on every transaction, security events, and the tamper-evident chain.

SQLAlchemy-Continuum writes a version row for every ORM change of a versioned record, grouped under one
`AuditTransaction` per database transaction. This module adds what Continuum lacks (../shared/PART11.md, section K):
the acting person and their printed name, the channel (web, cli), the reason for change, UTC time from
`core.clock.now_utc()`, security events, and a SHA-256 hash chain sealed at commit over every transaction's own rows.
`verify()` recomputes the chain and compares every live record with its last audited version.

There is no update or delete path for any audit row in the application, and no setting that turns auditing off.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy_continuum import versioning_manager

from core.clock import now_utc
from core.db import Versioned, db, versioned_classes

GENESIS = "0" * 64


class AuditTransaction(db.Model):
    """Continuum's transaction table, extended: one row per database transaction that changed GxP data."""

    __tablename__ = "audit_transaction"
    __table_args__ = {"sqlite_autoincrement": True}
    __versioning_manager__ = versioning_manager

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("core_user.id"), index=True)
    username: Mapped[str | None] = mapped_column(sa.String(64))
    printed_name: Mapped[str] = mapped_column(sa.String(200))
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    record_types: Mapped[str | None] = mapped_column(sa.Text)
    chain_seq: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64))
    hash: Mapped[str | None] = mapped_column(sa.String(64))


versioning_manager.transaction_cls = AuditTransaction


class AuditEvent(db.Model):
    """A security or system event (login, lockout, TOTP, permission denied...), sealed with its transaction."""

    __tablename__ = "audit_event"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("audit_transaction.id"), index=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("core_user.id"), index=True)
    subject_username: Mapped[str | None] = mapped_column(sa.String(200))
    detail: Mapped[str] = mapped_column(sa.Text, default="{}")


class AuditChainHead(db.Model):
    """The single row holding the chain's last position and hash; locked while a transaction is sealed."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))


EVENT_LABELS: dict[str, str] = {}  # event type -> label, in the audit log's order: core's and each package's
_EVENT_ORDER: dict[str, tuple[int, int]] = {}

SECURITY_EVENTS = {
    "login.success": "Login succeeded",
    "login.failure": "Login failed",
    "login.totp_failure": "Second factor (TOTP) failed",
    "logout": "Logout",
    "session.expired": "Session expired",
    "account.locked": "Account locked",
    "account.unlocked": "Account unlocked",
    "password.changed": "Password changed",
    "password.reset": "Password reset by administrator",
    "totp.enrolled": "TOTP enrolled",
    "totp.reset": "TOTP reset by administrator",
    "totp.replay": "TOTP code replay refused",
    "permission.denied": "Permission denied",
    "csrf.refused": "Form refused (CSRF token missing or wrong)",
    "action.refused": "Action refused (the record's state or rules do not allow it)",
    "audit.exported": "Audit trail exported",
}
ADMINISTRATION_EVENTS = {
    "backup.created": "Database backup created",
    "backup.restored": "Database restored from a backup",
    "user.deactivated": "Account deactivated",
    "user.reactivated": "Account reactivated",
    "roles.changed": "Roles changed",
    "api_token.created": "API token created",
    "api_token.revoked": "API token revoked",
    "api.request": "API request",
    "api.refused": "API request refused (no valid token)",
}
CORE_EVENTS = {**SECURITY_EVENTS, **ADMINISTRATION_EVENTS}


def register_events(labels: dict[str, str], *, position: int) -> None:
    """Declare event types (code -> label shown in the audit log; `position` places them in its filter, core's
    security events at 10 and administration events at 90, the packages' between); `record_event` refuses any
    other. Idempotent; a type declared again with another label is refused."""
    for code, label in labels.items():
        known = EVENT_LABELS.get(code)
        if known is not None and known != label:
            raise RuntimeError(f"audit event type {code} is declared twice, differently: {known!r} and {label!r}")
        _EVENT_ORDER.setdefault(code, (position, len(_EVENT_ORDER)))
        EVENT_LABELS[code] = label
    ordered = sorted(EVENT_LABELS.items(), key=lambda item: _EVENT_ORDER[item[0]])
    EVENT_LABELS.clear()
    EVENT_LABELS.update(ordered)


# --- who is acting ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str | None
    printed_name: str
    channel: str
    remote_addr: str | None = None


def _resolve_actor() -> Actor:
    if has_request_context():
        from flask_login import current_user

        remote = request.remote_addr
        if getattr(current_user, "is_authenticated", False):
            return Actor(current_user.id, current_user.username, current_user.full_name, "web", remote)
        return Actor(None, None, "anonymous", "web", remote)
    try:
        os_user = getpass.getuser()
    except Exception:  # no login name in some containers
        os_user = "unknown"
    return Actor(None, None, f"system (command line, OS user {os_user})", "cli", None)


def current_actor(session: Session | None = None) -> Actor:
    session = session or db.session
    actor = session.info.get("audit_actor")
    return actor if actor is not None else _resolve_actor()


@contextmanager
def acting_as(user: Any, channel: str | None = None) -> Iterator[None]:
    """Attribute what happens inside to `user` (e.g. the person logging in, before they have a session)."""
    session = db.session
    base = _resolve_actor()
    previous = session.info.get("audit_actor")
    session.info["audit_actor"] = Actor(user.id, user.username, user.full_name, channel or base.channel,
                                        base.remote_addr)
    try:
        yield
    finally:
        session.info["audit_actor"] = previous


def transaction_args(session: Session) -> dict[str, Any]:
    """Values for a new AuditTransaction (called by Continuum through core.db._AuditPlugin)."""
    actor = current_actor(session)
    return {
        "issued_at": now_utc(),
        "user_id": actor.user_id,
        "username": actor.username,
        "printed_name": actor.printed_name,
        "remote_addr": actor.remote_addr,
        "channel": actor.channel,
        "reason": session.info.get("audit_reason"),
    }


def ensure_transaction(session: Session | None = None) -> int:
    """The id of this unit of work's AuditTransaction, creating it if no versioned change has been flushed yet."""
    session = session or db.session()  # the Session itself: Continuum clears its state by the session it is given
    uow = versioning_manager.unit_of_work(session)
    if uow.current_transaction is None:
        uow.create_transaction(session)
    tx_id = uow.current_transaction.id
    session.info["audit_tx_id"] = tx_id
    return tx_id


def record_event(event_type: str, *, subject: Any = None, subject_username: str | None = None, **detail: Any) -> None:
    """Write a security/system event into the current unit of work; it is sealed into the chain at commit."""
    if event_type not in EVENT_LABELS:
        raise ValueError(f"unknown audit event type {event_type!r}")
    session = db.session
    tx_id = ensure_transaction(session)
    session.add(
        AuditEvent(
            transaction_id=tx_id,
            event_type=event_type,
            subject_user_id=getattr(subject, "id", None),
            subject_username=subject_username or getattr(subject, "username", None),
            detail=json.dumps(detail, sort_keys=True, default=str),
        )
    )
    session.flush()


def note_bulk_write(table_name: str, parent_table: str | None = None, ids: Iterable[Any] = ()) -> None:
    """Tell the sealer that a bulk path wrote version rows of `table_name` itself in this unit of work (for the
    records `ids` of `parent_table`, which the ORM must then not change in the same unit of work)."""
    db.session.info.setdefault("audit_tables", set()).add(table_name)
    if parent_table is not None:
        db.session.info.setdefault("audit_bulk_ids", {}).setdefault(parent_table, set()).update(ids)


class ChangedAfterBulkWrite(RuntimeError):
    """The ORM was about to change a record that a bulk statement wrote in the same unit of work: its version row
    would be written twice. Change it in the next unit of work (as two requests would)."""


# --- reason for change and no hard deletes ------------------------------------------------------------------------


class ReasonRequired(ValueError):
    """An edit of a record that has left draft was attempted without a reason for change."""


class DeleteRefused(ValueError):
    """GxP records are never deleted (retire or deactivate them instead); immutable ones are never changed."""


def _changed_fields(obj: Any) -> list[str]:
    state = sa.inspect(obj)
    return [attr.key for attr in state.attrs if attr.history.has_changes() and attr.key in state.mapper.columns]


@event.listens_for(Session, "before_flush")
def _guard_changes(session: Session, flush_context: Any, instances: Any) -> None:
    if session.info.get("audit_bulk_writer"):
        return
    for obj in session.deleted:
        if isinstance(obj, Versioned) and not obj.__allow_delete__:
            raise DeleteRefused(f"{obj.audit_title()} cannot be deleted: GxP records are retired, never deleted")
    needs_reason = [obj for obj in session.deleted if isinstance(obj, Versioned)]
    created = session.info.get("audit_created", ())
    bulk_ids = session.info.get("audit_bulk_ids", {})
    for obj in session.dirty:
        if bulk_ids and isinstance(obj, Versioned) and _changed_fields(obj) and \
                sa.inspect(obj).identity[0] in bulk_ids.get(obj.__table__.name, ()):
            raise ChangedAfterBulkWrite(f"{obj.audit_title()} was written in bulk in this unit of work; change it in "
                                        f"the next one")
        if sa.inspect(obj).identity_key in created:
            continue  # created earlier in this same transaction: not an edit of a recorded record
        if isinstance(obj, Versioned) and obj.__immutable__ and _changed_fields(obj):
            raise DeleteRefused(f"{obj.audit_title()} cannot be changed once recorded")
        if isinstance(obj, Versioned) and obj.audit_requires_reason():
            fields = set(_changed_fields(obj)) - set(obj.__audit_reason_exempt__)
            if fields:
                needs_reason.append(obj)
    if needs_reason and not session.info.get("audit_reason"):
        raise ReasonRequired(f"A reason for change is required to modify {needs_reason[0].audit_title()}")


@event.listens_for(Session, "after_flush")
def _note_created(session: Session, flush_context: Any) -> None:
    created = session.info.setdefault("audit_created", set())
    for obj in session.new:
        if isinstance(obj, Versioned):
            created.add(sa.inspect(obj).mapper.identity_key_from_instance(obj))


# --- canonical content and the hash chain ---------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


# one encoder, built once: json.dumps() with these options builds a new JSONEncoder per call, which verify() pays
# for every row; the output is identical
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


# the string encoder _ENCODER itself uses (ensure_ascii=False), and the exact types whose JSON text is that string
# encoding or their repr; every other value (bool, float, date, Decimal, bytes, nested data) goes through _dumps
_encode_str = json.encoder.encode_basestring
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {str: _encode_str, int: int.__repr__}


TX_COLUMNS = ("id", "chain_seq", "issued_at", "user_id", "username", "printed_name", "remote_addr", "channel",
              "reason", "record_types")
EVENT_COLUMNS = ("id", "transaction_id", "event_type", "subject_user_id", "subject_username", "detail")


@dataclass(frozen=True)
class VersionTable:
    """How to read one version table raw (no type processing), identically at sealing and at verification."""

    name: str
    parent: str
    columns: tuple[str, ...]  # sorted; includes transaction_id and operation_type
    pk: tuple[str, ...]
    tx_index: int
    # parent columns with a server default: a column added by a migration after a version row was written is NULL in
    # that version row while the live row holds the default, which is not a change made outside the application
    server_defaults: tuple[tuple[str, str], ...] = ()
    # the name its lines are hashed under: the version table's own, or its first name after a rename (core.db)
    label: str = ""
    # columns a migration removed from the live table; they stay in the version table for the earlier versions
    retired: tuple[str, ...] = ()

    @property
    def data_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in ("transaction_id", "operation_type"))

    @property
    def live_columns(self) -> tuple[str, ...]:
        """The data columns the live table still has: what verify compares with the latest version."""
        return tuple(c for c in self.data_columns if c not in self.retired)


_VERSION_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {}
_VERSION_LINES: dict[str, Callable[[Iterable[Any]], str]] = {}


def version_tables() -> list[VersionTable]:
    result = []
    for cls in versioned_classes():
        vcls = versioning_manager.version_class_map[cls]
        vt = vcls.__table__
        cols = tuple(sorted(c.name for c in vt.columns))
        pk = tuple(c.name for c in cls.__table__.primary_key.columns)
        defaults = tuple((c.name, str(c.server_default.arg)) for c in cls.__table__.columns
                         if c.server_default is not None and isinstance(getattr(c.server_default, "arg", None), str))
        label = cls.__dict__.get("__audit_chain_label__") or vt.name
        retired = tuple(sorted(c for c in cols if c not in cls.__table__.c
                               and c not in ("transaction_id", "operation_type")))
        result.append(VersionTable(vt.name, cls.__table__.name, cols, pk, cols.index("transaction_id"), defaults,
                                   label, retired))
        if _VERSION_COLUMNS.get(vt.name) != (label, cols):
            _VERSION_COLUMNS[vt.name] = (label, cols)
            _VERSION_LINES[vt.name] = _line_encoder(label, cols)
    return result


def _q(name: str) -> str:
    return f'"{name}"'


# Canonical lines name each column and leave NULLs out, so that a column added to a table later (NULL in every
# existing row) does not change the hash of any earlier transaction. A migration that adds a column to a versioned
# table must therefore leave it NULL in existing version rows (no server default on the version table).


def _pairs(columns: tuple[str, ...], row: Iterable[Any]) -> dict[str, Any]:
    # a dict in the fixed (sorted) column order: JSON keeps that order, so the text is deterministic
    return {c: v for c, v in zip(columns, row, strict=False) if v is not None}


def _canonical_line(label: str, columns: tuple[str, ...], row: Iterable[Any]) -> str:
    """The definition of a canonical line; _line_encoder computes the same text faster."""
    return _dumps([label, _pairs(columns, row)])


def _line_encoder(label: str, columns: tuple[str, ...]) -> Callable[[Iterable[Any]], str]:
    """`row -> _canonical_line(label, columns, row)`, byte for byte, for sealing and verifying many rows.

    The JSON text of a value does not depend on where it stands, so each value is encoded alone (the common exact str
    and int directly, as _ENCODER does) and the pieces are joined with _ENCODER's separators, without building a dict,
    a list and an encoder per row."""
    head = "[" + _encode_str(label) + ",{"
    keys = tuple(_encode_str(c) + ":" for c in columns)
    scalar = _SCALAR_TEXT.get

    def encode(row: Iterable[Any]) -> str:
        pairs = [k + scalar(type(v), _dumps)(v) for k, v in zip(keys, row, strict=False) if v is not None]
        return head + ",".join(pairs) + "}]"

    return encode


_tx_repr = _line_encoder("tx", TX_COLUMNS)
_event_repr = _line_encoder("event", EVENT_COLUMNS)


def _version_repr(table: str, row: Iterable[Any]) -> str:
    return _VERSION_LINES[table](row)


def chain_hash(prev_hash: str, parts: list[str]) -> str:
    """SHA-256 over the previous hash and this transaction's canonical lines (tx line first, the rest sorted)."""
    head, rest = parts[0], sorted(parts[1:])
    payload = "\n".join([prev_hash, head, *rest])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _seal(session: Session) -> None:
    if session.info.get("audit_sealed"):
        return
    session.flush()
    tx_id = session.info.get("audit_tx_id")
    if tx_id is None:
        return
    tables = {vt.name: vt for vt in version_tables()}
    touched = [(tables[t].name, tables[t].parent, tables[t].columns, _VERSION_LINES[t])
               for t in sorted(session.info.get("audit_tables", ()))]
    _seal_transaction(session.connection(), tx_id, touched, session.info.get("audit_reason"))
    session.info["audit_sealed"] = True
    loaded = session.identity_map.get(sa.orm.util.identity_key(AuditTransaction, tx_id))
    if loaded is not None:
        session.expire(loaded)


def _seal_transaction(conn: sa.Connection, tx_id: int,
                      touched: list[tuple[str, str, tuple[str, ...], Callable[[Iterable[Any]], str]]],
                      reason: str | None) -> None:
    """Seal transaction `tx_id` into the chain: its position, the tables it touched (version table, parent table,
    sorted columns, line encoder), its hash over its own rows, and the chain head. The head row is locked first, so
    concurrent transactions are sealed one after the other."""
    head_seq, head_hash = conn.execute(
        sa.select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == 1).with_for_update()
    ).one()
    seq = head_seq + 1
    record_types = "," + ",".join(parent for _n, parent, _c, _e in touched) + "," if touched else None
    conn.execute(
        sa.update(AuditTransaction.__table__)
        .where(AuditTransaction.__table__.c.id == tx_id)
        .values(chain_seq=seq, record_types=record_types, reason=reason)
    )
    tx_row = conn.execute(
        sa.text(f"SELECT {', '.join(TX_COLUMNS)} FROM audit_transaction WHERE id = :id"), {"id": tx_id}
    ).one()
    parts = [_tx_repr(tx_row)]
    for name, _parent, columns, encode in touched:
        rows = conn.execute(
            sa.text(f"SELECT {', '.join(map(_q, columns))} FROM {_q(name)} WHERE transaction_id = :id"),
            {"id": tx_id},
        )
        parts.extend(map(encode, rows))
    events = conn.execute(
        sa.text(f"SELECT {', '.join(EVENT_COLUMNS)} FROM audit_event WHERE transaction_id = :id"), {"id": tx_id}
    )
    parts.extend(map(_event_repr, events))
    digest = chain_hash(head_hash, parts)
    conn.execute(
        sa.update(AuditTransaction.__table__)
        .where(AuditTransaction.__table__.c.id == tx_id)
        .values(prev_hash=head_hash, hash=digest)
    )
    conn.execute(sa.update(AuditChainHead.__table__).where(AuditChainHead.id == 1).values(seq=seq, hash=digest))


def seal_migration(conn: sa.Connection, tx_id: int, tables: dict[str, tuple[str, str]]) -> None:
    """Seal a transaction a schema migration recorded itself (docs/audit-trail.md, "Schema migrations").

    `tables` maps each version table the migration wrote rows into to (its parent table, the name its lines are hashed
    under). The columns are read from the database as it stands at this step of the upgrade, not from today's models
    (a later migration may add columns): a column added later is NULL in these rows, and NULL values are not part of
    a line, so verification finds the same hash."""
    inspector = sa.inspect(conn)
    touched = []
    for name, (parent, label) in sorted(tables.items()):
        columns = tuple(sorted(c["name"] for c in inspector.get_columns(name)))
        touched.append((name, parent, columns, _line_encoder(label, columns)))
    _seal_transaction(conn, tx_id, touched, conn.execute(
        sa.text("SELECT reason FROM audit_transaction WHERE id = :id"), {"id": tx_id}).scalar())


_TX_KEYS = ("audit_tx_id", "audit_tables", "audit_sealed", "audit_actor", "audit_created", "audit_bulk_ids")


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _seal(session)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _after_end(session: Session) -> None:
    for key in _TX_KEYS:
        if key != "audit_actor":
            session.info.pop(key, None)


# --- verification ---------------------------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    transactions: int = 0
    version_rows: int = 0
    records: int = 0
    chain_error: str | None = None
    record_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain_error is None and not self.record_problems


def verify(engine: sa.Engine | None = None, *, max_record_problems: int = 50) -> VerifyResult:
    """Walk the whole chain, then compare every live versioned record with its latest version row.

    Reads on a connection of its own, in one transaction, so it sees one consistent snapshot of committed data."""
    engine = engine or db.engine
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        return _verify(conn, max_record_problems)


def _verify(conn: sa.Connection, max_record_problems: int) -> VerifyResult:
    result = VerifyResult()
    parts_by_tx: dict[int, list[str]] = defaultdict(list)
    latest: dict[str, dict[tuple, tuple]] = {}
    tables = version_tables()
    for vt in tables:
        rows = conn.execute(sa.text(f"SELECT {', '.join(map(_q, vt.columns))} FROM {_q(vt.name)}")).all()
        result.version_rows += len(rows)
        pk_idx = [vt.columns.index(c) for c in vt.pk]
        tx_i = vt.tx_index
        newest: dict[tuple, tuple] = {}
        encode = _VERSION_LINES[vt.name]
        for row in rows:
            parts_by_tx[row[tx_i]].append(encode(row))
            key = tuple(row[i] for i in pk_idx)
            current = newest.get(key)
            if current is None or row[tx_i] > current[tx_i]:
                newest[key] = row
        latest[vt.name] = newest
    for row in conn.execute(sa.text(f"SELECT {', '.join(EVENT_COLUMNS)} FROM audit_event")):
        parts_by_tx[row[1]].append(_event_repr(row))

    txs = conn.execute(
        sa.text(f"SELECT {', '.join(TX_COLUMNS)}, prev_hash, hash FROM audit_transaction ORDER BY chain_seq")
    ).all()
    expected_prev = GENESIS
    position = 0
    n_cols = len(TX_COLUMNS)
    for row in txs:
        tx_id, seq = row[0], row[1]
        if seq is None:
            result.chain_error = result.chain_error or (
                f"transaction {tx_id} is not sealed into the chain (written outside the application)"
            )
            continue
        position += 1
        result.transactions += 1
        if result.chain_error:
            continue
        if seq != position:
            result.chain_error = (
                f"chain broken before transaction {tx_id}: expected position {position}, found {seq} "
                f"(a transaction was deleted or inserted directly in the database)"
            )
            continue
        if row[n_cols] != expected_prev:
            result.chain_error = (
                f"chain broken at transaction {tx_id} (position {seq}): its previous-hash does not match "
                f"the transaction before it"
            )
            continue
        digest = chain_hash(expected_prev, [_tx_repr(row[:n_cols]), *parts_by_tx.pop(tx_id, [])])
        if digest != row[n_cols + 1]:
            result.chain_error = (
                f"chain broken at transaction {tx_id} (position {seq}): its content no longer matches its hash "
                f"(an audit or version row of this transaction was altered, inserted or deleted directly in the "
                f"database)"
            )
            continue
        expected_prev = digest
    if result.chain_error is None:
        if parts_by_tx:
            orphan = min(parts_by_tx)
            result.chain_error = (
                f"audit rows refer to transaction {orphan}, which is not in the chain "
                f"(rows inserted directly in the database)"
            )
        else:
            head = conn.execute(sa.text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")).one_or_none()
            if head is None or head[0] != position or head[1] != expected_prev:
                result.chain_error = (
                    f"the chain head does not match the last transaction (position {position}): "
                    f"the newest transactions were deleted directly in the database"
                )

    for vt in tables:
        _compare_live(conn, vt, latest[vt.name], result, max_record_problems)
    return result


def _is_default(default: str | None, value: Any) -> bool:
    if default is None or value is None:
        return False
    if isinstance(value, bool):
        return default.lower() in (("1", "true") if value else ("0", "false"))
    return str(value) == default.strip("'")


def _compare_live(conn, vt: VersionTable, newest: dict[tuple, tuple], result: VerifyResult, limit: int) -> None:
    data_cols = vt.live_columns
    idx = [vt.columns.index(c) for c in data_cols]
    op_i = vt.columns.index("operation_type")
    pk_pos = [data_cols.index(c) for c in vt.pk]
    seen: set[tuple] = set()
    defaults = dict(vt.server_defaults)

    def problem(text: str) -> None:
        if len(result.record_problems) < limit:
            result.record_problems.append(text)

    for live in conn.execute(sa.text(f"SELECT {', '.join(map(_q, data_cols))} FROM {_q(vt.parent)}")):
        result.records += 1
        key = tuple(live[i] for i in pk_pos)
        seen.add(key)
        label = f"{vt.parent} " + ", ".join(f"{c}={v}" for c, v in zip(vt.pk, key, strict=True))
        version = newest.get(key)
        if version is None:
            problem(f"{label} was created outside the application (no audited version)")
            continue
        if version[op_i] == 2:
            problem(f"{label} exists although its audited history ends with a deletion")
            continue
        changed = [c for c, li, vi in zip(data_cols, live, idx, strict=True)
                   if li != version[vi] and not (version[vi] is None and _is_default(defaults.get(c), li))]
        if changed:
            problem(f"{label} was changed outside the application (fields: {', '.join(changed)})")
    for key, version in newest.items():
        if key not in seen and version[op_i] != 2:
            label = f"{vt.parent} " + ", ".join(f"{c}={v}" for c, v in zip(vt.pk, key, strict=True))
            problem(f"{label} was deleted outside the application")
