"""The database: one `db`, the declarative base, versioning set-up and `transaction()`, the only place that commits.

Order matters (see ../shared/STACK_NOTES.md): `make_versioned` runs here, before any versioned model class is defined,
and exactly once per process; `configure_models()` runs after every model module is imported.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy_continuum import make_versioned, versioning_manager
from sqlalchemy_continuum import unit_of_work as continuum_uow
from sqlalchemy_continuum import utils as continuum_utils
from sqlalchemy_continuum.plugins.base import Plugin

from core.versioning_safety import make_thread_safe

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator):
    """Stores UTC as a naive timestamp on every dialect and always returns an aware UTC datetime.

    Naive datetimes are refused on the way in: a time without a zone is a bug in a GxP system.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use core.clock.now_utc()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    registry = sa.orm.registry(metadata=MetaData(naming_convention=NAMING_CONVENTION),
                               type_annotation_map={datetime: UTCDateTime})


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


class _AuditPlugin(Plugin):
    """Connects Continuum's transaction to the Attest audit trail (core.audit): who, where, why, when."""

    def transaction_args(self, uow, session):
        from core import audit

        return audit.transaction_args(session)

    def before_flush(self, uow, session):
        if uow.current_transaction is not None:
            session.info["audit_tx_id"] = uow.current_transaction.id

    def after_create_version_objects(self, uow, session):
        tables = session.info.setdefault("audit_tables", set())
        for version_obj in uow.version_objs.values():
            tables.add(version_obj.__table__.name)


# Continuum's manager is not thread-safe (upstream issue #390); this must precede make_versioned, which registers the
# manager's methods as listeners
make_thread_safe(versioning_manager)
make_versioned(user_cls=None, plugins=[_AuditPlugin()], options={"strategy": "subquery"})


def _is_session_modified(session: sa.orm.Session) -> bool:
    """Continuum asks before every flush whether a versioned object changed, and its own answer walks every object
    held by the session: a unit of work that loads or writes thousands of records (an HR import, the demo) becomes
    quadratic. Only new, dirty and deleted objects can have changed, so only those are asked (the same answer)."""
    return any(continuum_utils.is_modified_or_deleted(obj)
               for obj in chain(session.new, session.dirty, session.deleted))


continuum_uow.is_session_modified = _is_session_modified


class Versioned:
    """Mixin for GxP records: every change is versioned by Continuum and sealed into the audit hash chain.

    Subclasses may set `__audit_label__` (a readable record type), `__audit_reason_exempt__` (preference fields
    whose change needs no reason), `__allow_delete__` (link rows such as role grants; GxP records are never
    deleted) and `__immutable__` (records such as signatures that are never changed once written).
    `audit_requires_reason()` says whether an edit needs a reason for change (default: always; documents override
    it to allow reason-free edits while in Draft).

    Schema changes keep the recorded history as it was sealed (docs/audit-trail.md, "Schema migrations"): a column a
    migration removes from the table stays in its version table, declared in `__audit_retired__` (name -> (type,
    label)), so earlier versions keep their values and their hashes; a table a migration renames keeps hashing its
    versions under its first version table's name (`__audit_chain_label__`) and is still found under its former
    names (`__audit_former_tables__`) in transactions recorded before the rename.
    """

    __versioned__: dict[str, Any] = {}
    __audit_label__: str = "Record"
    __audit_reason_exempt__: frozenset[str] = frozenset()
    __allow_delete__: bool = False
    __immutable__: bool = False  # e.g. signatures: written once, never changed
    __audit_retired__: dict[str, tuple[Any, str]] = {}
    __audit_chain_label__: str | None = None
    __audit_former_tables__: tuple[str, ...] = ()

    def audit_requires_reason(self) -> bool:
        return True

    def audit_title(self) -> str:
        return f"{self.__audit_label__} {sa.inspect(self).identity[0] if sa.inspect(self).identity else ''}".strip()


def table_args(*constraints: Any) -> tuple[Any, ...]:
    """__table_args__ for a versioned table: SQLite must never reuse a deleted row's id (its history would merge)."""
    return (*constraints, {"sqlite_autoincrement": True})


_configured = False


def configure_models() -> None:
    """Build version classes once every model module is imported (before create_all or Alembic reads metadata)."""
    global _configured
    sa.orm.configure_mappers()
    if not versioning_manager.version_class_map:
        raise RuntimeError("versioning failed to initialise: no versioned classes; Attest refuses to start")
    _keep_retired_columns()
    _configured = True


def _keep_retired_columns() -> None:
    """Put each model's retired columns (`Versioned.__audit_retired__`) back into its version table and class: the
    version rows written before a migration removed them still hold their values, which the hash chain covers and the
    record's history shows. New version rows leave them empty (NULL), which the chain leaves out."""
    for cls, vcls in versioning_manager.version_class_map.items():
        for name, (type_, label) in cls.__dict__.get("__audit_retired__", {}).items():
            table = vcls.__table__
            if name in table.c:
                continue
            column = sa.Column(name, type_, nullable=True, info={"label": label, "retired": True})
            table.append_column(column)
            vcls.__mapper__.add_property(name, column)


def versioned_classes() -> list[type]:
    """Every versioned model class (parent classes), in a stable order."""
    return sorted(versioning_manager.version_class_map, key=lambda cls: cls.__table__.name)


# --- transactions ---------------------------------------------------------------------------------------------

_write_intent: contextvars.ContextVar[bool] = contextvars.ContextVar("attest_write_intent", default=False)


class NestedTransactionError(RuntimeError):
    pass


@contextmanager
def transaction(reason: str | None = None) -> Iterator[sa.orm.Session]:
    """One unit of work: commits on success, rolls back on any exception. The only place Attest commits.

    `reason` is the reason for change recorded on the audit transaction; edits of records that have left draft
    are refused without one.
    """
    session = db.session()
    if session.info.get("in_unit_of_work"):
        raise NestedTransactionError("transaction() is already open; services must not open their own")
    if session.new or session.dirty or session.deleted:
        raise NestedTransactionError("changes were made outside transaction(); they would be committed silently")
    if session.in_transaction():
        # end the read-only transaction a request may have begun (e.g. loading the current user) so that the
        # write transaction starts fresh; on SQLite it then takes the write lock up front (BEGIN IMMEDIATE)
        session.rollback()
    token = _write_intent.set(True)
    session.info["in_unit_of_work"] = True
    session.info["audit_reason"] = (reason or "").strip() or None
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop("in_unit_of_work", None)
        session.info.pop("audit_reason", None)
        _write_intent.reset(token)


def lock_row(record: object) -> None:
    """Reload the record under a row lock (SELECT ... FOR UPDATE; SQLite's unit of work already holds the write lock)
    so that every check after it sees the committed state, not a page's copy, and concurrent changes queue."""
    db.session.refresh(record, with_for_update=True)


def set_reason(reason: str | None) -> None:
    """Set or replace the reason for change of the open unit of work."""
    db.session.info["audit_reason"] = (reason or "").strip() or None


def default_reason(reason: str) -> None:
    """Record `reason` unless the user already gave one (e.g. a signed state transition names itself)."""
    if not db.session.info.get("audit_reason"):
        set_reason(reason)


# --- engine set-up --------------------------------------------------------------------------------------------


def _sqlite_connect(dbapi_connection, connection_record) -> None:
    # let SQLAlchemy's "begin" event emit BEGIN itself (the pysqlite recipe), so writes can BEGIN IMMEDIATE
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN")


def init_app(app) -> None:
    db.init_app(app)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
