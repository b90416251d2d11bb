"""Failure atomicity (PART11.md, adversarial test 28): a failure at any write inside a signed approval, a CAPA
retraining approval or an HR import leaves the database exactly as it was, the audit chain verifies, and the same
operation then succeeds.

Each test runs the operation once normally and records its write statements (INSERT, UPDATE, DELETE; for an approval:
the audit transaction row, the signature, the status change, the training written in bulk by core.bulk, the version
rows, and the sealing of the audit transaction at commit). Hypothesis then chooses one of those writes and a fault:
an exception raised just before the statement is sent, or the database connection lost under it (PostgreSQL: the
server ends the session; SQLite: the connection is closed). Every example builds its own records (a new document,
CAPA or set of people) on the test's database and compares every row of every table before and after the failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import event

from core.auth import services as accounts
from core.db import db
from features.support import documents as docs
from qms.capa import services as capa_services
from qms.capa.models import ACTION_APPROVED
from qms.documents import services
from qms.documents.models import APPROVED
from qms.documents.publish import item_of
from tests.integration.stress_helpers import audit_verifies, revision_in_force
from tests.integration.test_capa_lifecycle import add, approve_plan, raise_capa, v
from training import engine
from training.hr_import import services as hris
from training.models import CANCELLED, OPEN, SOURCE_CAPA_ACTION, TrainingAssignment

# When a write of SQLAlchemy-Continuum's own session fails (the audit transaction row, an ORM version row), that
# session, bound to the same connection, rolls the connection's transaction back itself; the application's rollback
# then finds it rolled back already and SQLAlchemy warns. Nothing is left behind (each example checks every table).
pytestmark = pytest.mark.filterwarnings("ignore:transaction already deassociated from connection:"
                                        "sqlalchemy.exc.SAWarning")

EXAMPLES = 10  # each example builds its records, fails, compares the database, verifies the chain and retries
WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)', re.IGNORECASE)
EXCEPTION, CONNECTION_LOST = "exception", "connection lost"


class InjectedFault(RuntimeError):
    """The failure a test injected (a bug, a full disk, a killed worker: anything that is not a refusal)."""


def _lose_connection(conn: sa.Connection) -> None:
    raw = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        with db.engine.connect() as admin:  # the server ends the session, as when it restarts; wait until it has
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": raw.info.backend_pid})
    else:
        raw.close()


@contextmanager
def writes(fail_at: int | None = None, fault: str = EXCEPTION) -> Iterator[list[str]]:
    """Record each write statement sent to the database as "VERB table"; the one at index `fail_at` fails."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        match = WRITE.match(statement)
        if match is None:
            return
        seen.append(f"{match.group(1).split()[0].upper()} {match.group(2)}")
        if len(seen) - 1 == fail_at:
            if fault == EXCEPTION:
                raise InjectedFault(f"injected before write {fail_at}: {seen[-1]}")
            _lose_connection(conn)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def database_rows() -> dict[str, list[tuple]]:
    """Every committed row of every table, read on a connection of its own."""
    with db.engine.connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(
            sa.select(table).order_by(*(table.primary_key.columns or table.columns)))]
            for table in db.metadata.sorted_tables}


def _injected(error: BaseException, fault: str) -> bool:
    if fault == EXCEPTION:
        return isinstance(error, InjectedFault)
    return isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated


def all_or_nothing(app, *, build: Callable[[], Any], start: Callable[[Any], Callable[[], Any]],
                   check_done: Callable[[Any], None], steps: set[str]) -> None:
    """`build()` makes fresh records for one run; `start(records)` does what comes before the operation (e.g. the
    signing ceremony's authentication, its own unit of work) and returns the operation, one unit of work;
    `check_done(records)` checks a completed operation. `steps` are writes the operation must include."""
    records = build()
    operation = start(records)
    with writes() as normal:
        operation()
    check_done(records)
    assert steps <= set(normal), f"the operation no longer writes {steps - set(normal)}: {normal}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(at=st.integers(0, len(normal) - 1), fault=st.sampled_from([EXCEPTION, CONNECTION_LOST]))
    @example(at=len(normal) - 1, fault=CONNECTION_LOST)  # the last write: sealing the audit transaction at commit
    def fails_whole_then_succeeds(at: int, fault: str) -> None:
        records = build()
        operation = start(records)
        before = database_rows()
        with writes(fail_at=at, fault=fault) as seen, pytest.raises(Exception) as failure:
            operation()
        note(f"failed write {at} of {len(normal)}: {seen[-1]} ({fault})")
        assert _injected(failure.value, fault), repr(failure.value)
        after = database_rows()
        assert [name for name in before if before[name] != after[name]] == [], "the failure left writes behind"
        audit_verifies(app)

        retry = start(records)  # a new ceremony: a proof is good for one attempt
        with writes() as again:
            retry()
        assert sorted(again) == sorted(normal)  # the same writes (a flush may order some differently)
        check_done(records)

    fails_whole_then_succeeds()
    audit_verifies(app)


# --- (a) the final approval of a revision -----------------------------------------------------------------------------


def test_a_failure_at_any_write_of_the_final_approval_leaves_nothing_and_the_retry_approves(app, p, make_user):
    trainees = [p.operator, make_user("olga.op", roles={"operator"})]
    docs.hold(trainees, p.job_function_id)
    numbers = count(1)

    def in_review():
        revision = docs.new_revision(p, docs.new_document(p, number=f"SOP-FA-{next(numbers):03d}"))
        docs.route(p, revision)
        docs.submit(p, revision)
        docs.review_as(p.reviewer, revision)
        return revision

    def start(revision):
        proof, seen = docs.prove(p.qa), docs.version(revision)
        return lambda: docs.run(services.approve, revision, actor=p.qa, proof=proof, expected_row_version=seen)

    def check_done(revision) -> None:
        db.session.expire_all()
        assert revision.status == APPROVED
        assert sorted(db.session.scalars(sa.select(TrainingAssignment.user_id)
                                         .where(TrainingAssignment.item_id == item_of(revision).id))) == \
            sorted(u.id for u in trainees)

    all_or_nothing(app, build=in_review, start=start, check_done=check_done,
                   steps={"INSERT sig_signature", "UPDATE qms_document_revision", "INSERT training_assignment",
                          "INSERT training_assignment_version", "UPDATE audit_chain_head"})


# --- (b) the approval of a CAPA retraining action ---------------------------------------------------------------------


def test_a_failure_at_any_write_of_a_retraining_approval_leaves_nothing_and_the_retry_assigns(app, p, make_user):
    named = make_user("nina.named", roles={"operator"})
    holders = [p.operator, make_user("olga.op", roles={"operator"})]
    docs.hold(holders, p.job_function_id)
    numbers = count(1)

    def planned_retraining():
        document = revision_in_force(p, f"SOP-FR-{next(numbers):03d}").document
        capa = raise_capa(p)
        action = add(p, capa, description="Retrain on the revised SOP", retraining=True, document_ids=[document.id],
                     job_function_ids=[p.job_function_id], user_ids=[named.id])
        approve_plan(p, capa)
        return action

    def start(action):
        proof, seen = docs.prove(p.qa), v(action.capa)
        return lambda: docs.run(capa_services.approve_retraining_action, action, actor=p.qa, proof=proof,
                           expected_row_version=seen)

    def check_done(action) -> None:
        db.session.expire_all()
        assert action.status == ACTION_APPROVED
        assert sorted(db.session.scalars(sa.select(TrainingAssignment.user_id).where(
            TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.source_id == action.id))) == \
            sorted(u.id for u in [named, *holders])

    all_or_nothing(app, build=planned_retraining, start=start, check_done=check_done,
                   steps={"INSERT sig_signature", "UPDATE qms_capa_action", "UPDATE qms_capa",
                          "INSERT training_assignment", "UPDATE audit_chain_head"})


# --- (c) applying an HR import ----------------------------------------------------------------------------------------


def test_a_failure_at_any_write_of_an_hr_import_leaves_nothing_and_the_retry_imports(app, p, make_user, coordinator):
    revision_in_force(p, "SOP-FH-001")  # what holders of the job function train on
    numbers = count(1)

    def people_and_file():
        n = next(numbers)
        make_user(f"kim.keep{n}", roles={"operator"}, full_name=f"Kim Keep {n}")
        leaver = make_user(f"lee.leave{n}", roles={"operator"}, full_name=f"Lee Leave {n}")
        docs.hold([leaver], p.job_function_id)
        docs.run(engine.reconcile_user, leaver.id, reason="set-up")  # his training on the SOP is open
        text = "\n".join([",".join(hris.COLUMNS),
                          f"nia.new{n},Nia New {n},nia.new{n}@example.com,MAIN,QA,OP-MIX,,yes",
                          f"kim.keep{n},Kim Keep-Smith {n},kim.keep{n}@example.com,,,OP-MIX,,yes",
                          f"lee.leave{n},Lee Leave {n},lee.leave{n}@example.com,,,,,no"]) + "\n"
        return n, text

    def start(records):
        _n, text = records
        return lambda: docs.run(hris.apply, text, actor=coordinator, audit_reason="Monthly HR import")

    def check_done(records) -> None:
        n, _text = records
        db.session.expire_all()
        newcomer, keeper, leaver = (accounts.get_by_username(f"{name}{n}")
                                    for name in ("nia.new", "kim.keep", "lee.leave"))
        assert newcomer is not None and keeper.full_name == f"Kim Keep-Smith {n}" and not leaver.active
        training = {user.id: [a.status for a in db.session.scalars(
            sa.select(TrainingAssignment).where(TrainingAssignment.user_id == user.id))]
            for user in (newcomer, keeper, leaver)}
        assert training == {newcomer.id: [OPEN], keeper.id: [OPEN], leaver.id: [CANCELLED]}

    all_or_nothing(app, build=people_and_file, start=start, check_done=check_done,
                   steps={"INSERT core_user", "UPDATE core_user", "INSERT training_user_job_function",
                          "INSERT training_assignment", "UPDATE training_assignment", "UPDATE audit_chain_head"})
