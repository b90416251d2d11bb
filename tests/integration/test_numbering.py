"""Record numbers (CC-2026-0001): sequential per prefix and year, given back by a rollback, and unique and gap-free
when many people create records at the same moment. Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from core import clock
from core.db import db, transaction
from qms.numbering import NumberSequence, format_number, next_number

HOLD = 0.5  # seconds the first transaction keeps its number before ending, so the second really waits for it
THREADS = 8
PER_THREAD = 25


class Abandoned(Exception):
    """The record could not be saved: its transaction rolls back."""


def _take(prefix: str, year: int | None = None) -> str:
    with transaction():
        return next_number(prefix, year)


def _concurrently(app, *actions) -> list[BaseException]:
    """Run each action in its own thread, application context, session and connection; return what they raised."""
    errors: list[BaseException] = []

    def target(action) -> None:
        try:
            with app.app_context():
                action()
                db.session.remove()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    db.session.rollback()  # the test's own session holds no snapshot or lock while the threads run
    threads = [threading.Thread(target=target, args=(action,)) for action in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread is still waiting"
    return errors


def test_numbers_are_sequential_per_prefix_and_year(app):
    with transaction():
        assert [next_number("CC", 2026) for _ in range(3)] == ["CC-2026-0001", "CC-2026-0002", "CC-2026-0003"]
    assert _take("CC", 2026) == "CC-2026-0004"
    assert db.session.get(NumberSequence, ("CC", 2026)).last_value == 4


def test_a_new_year_restarts_at_0001_and_leaves_the_old_year_alone(app):
    assert [_take("DEV", 2026), _take("DEV", 2026)] == ["DEV-2026-0001", "DEV-2026-0002"]
    assert _take("DEV", 2027) == "DEV-2027-0001"
    assert _take("DEV", 2026) == "DEV-2026-0003"


def test_the_year_defaults_to_the_current_utc_year(app):
    clock.freeze(datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert _take("CAPA") == "CAPA-2027-0001"
    clock.freeze(datetime(2028, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert _take("CAPA") == "CAPA-2028-0001"


def test_prefixes_count_independently(app):
    with transaction():
        taken = [next_number("CC", 2026), next_number("DEV", 2026), next_number("CC", 2026), next_number("CAPA", 2026)]
    assert taken == ["CC-2026-0001", "DEV-2026-0001", "CC-2026-0002", "CAPA-2026-0001"]


def test_numbers_past_9999_grow_instead_of_being_truncated(app):
    with transaction():
        db.session.add(NumberSequence(prefix="CC", year=2026, last_value=9998))
    assert [_take("CC", 2026), _take("CC", 2026)] == ["CC-2026-9999", "CC-2026-10000"]
    assert format_number("CC", 2026, 123456) == "CC-2026-123456"


@pytest.mark.parametrize("prefix", ["cc", "C", "ABCDEFGHI", "C-C", "CC1", "", " CC", "ÄB", None])
def test_a_malformed_prefix_is_refused_with_a_clear_error(app, prefix):
    with pytest.raises(ValueError, match="2 to 8 upper-case letters"), transaction():
        next_number(prefix, 2026)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(NumberSequence)) == 0


@pytest.mark.parametrize("year", [26, 10000, "2026", True])
def test_a_year_that_is_not_four_digits_is_refused(app, year):
    with pytest.raises(ValueError, match="four-digit year"), transaction():
        next_number("CC", year)


def test_a_number_outside_a_unit_of_work_is_refused(app):
    with pytest.raises(RuntimeError, match=r"inside core\.db\.transaction\(\)"):
        next_number("CC", 2026)


def test_a_database_without_an_atomic_upsert_of_ours_is_refused_and_takes_no_number(app, monkeypatch):
    """The counter is one INSERT ... ON CONFLICT DO UPDATE ... RETURNING in PostgreSQL's or SQLite's dialect; any
    other database is refused, never served by a read-then-write that two creators could interleave."""
    monkeypatch.setattr(db.engine.dialect, "name", "mysql")
    with pytest.raises(RuntimeError, match="not implemented for the mysql database"), transaction():
        next_number("CC", 2026)
    monkeypatch.undo()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(NumberSequence)) == 0
    assert _take("CC", 2026) == "CC-2026-0001"


def test_a_rolled_back_transaction_gives_its_number_back(app):
    with pytest.raises(Abandoned), transaction():
        assert next_number("CC", 2026) == "CC-2026-0001"  # the counter row is created ...
        raise Abandoned
    assert _take("CC", 2026) == "CC-2026-0001"  # ... and its creation undone
    with pytest.raises(Abandoned), transaction():
        assert next_number("CC", 2026) == "CC-2026-0002"  # the counter row is incremented ...
        raise Abandoned
    assert _take("CC", 2026) == "CC-2026-0002"  # ... and the increment undone


@pytest.mark.parametrize("first_of_the_year", [True, False], ids=["new-counter", "existing-counter"])
def test_a_creator_waiting_on_a_number_gets_it_when_the_holder_rolls_back(app, first_of_the_year):
    """The counter stays locked until the holder's transaction ends, so nobody else can take the number meanwhile:
    when the holder rolls back, the waiting creator gets that same number and no gap is left."""
    if not first_of_the_year:
        assert _take("CC", 2026) == "CC-2026-0001"
    expected = "CC-2026-0001" if first_of_the_year else "CC-2026-0002"
    taken = threading.Event()
    seen: dict[str, object] = {}

    def holder() -> None:
        try:
            with transaction():
                seen["holder"] = next_number("CC", 2026)
                taken.set()
                time.sleep(HOLD)
                raise Abandoned
        except Abandoned:
            pass

    def waiter() -> None:
        assert taken.wait(10)
        started = time.monotonic()
        with transaction():
            seen["waiter"] = next_number("CC", 2026)
            seen["waited"] = time.monotonic() - started

    assert _concurrently(app, holder, waiter) == []
    assert seen["holder"] == seen["waiter"] == expected
    assert seen["waited"] > HOLD / 2, "the second creator did not wait for the first one's transaction to end"
    db.session.expire_all()
    assert db.session.get(NumberSequence, ("CC", 2026)).last_value == int(expected[-4:])


def test_numbers_stay_unique_and_gap_free_under_concurrent_creation(app):
    """8 creators x 25 records, each record in its own transaction on its own connection, all starting together:
    on PostgreSQL they contend on the counter row (including its first insert); on SQLite BEGIN IMMEDIATE queues
    them."""
    barrier = threading.Barrier(THREADS)
    taken: list[list[str]] = [[] for _ in range(THREADS)]

    def creator(n: int):
        def action() -> None:
            barrier.wait()
            for _ in range(PER_THREAD):
                with transaction():
                    number = next_number("CC", 2026)
                taken[n].append(number)
        return action

    assert _concurrently(app, *(creator(n) for n in range(THREADS))) == []
    numbers = [number for per_thread in taken for number in per_thread]
    total = THREADS * PER_THREAD
    assert len(numbers) == total and len(set(numbers)) == total, "a number was handed out twice"
    assert sorted(numbers) == [f"CC-2026-{i:04d}" for i in range(1, total + 1)], "a number is missing"
    for per_thread in taken:
        assert per_thread == sorted(per_thread), "one creator's later record got a smaller number"
    db.session.expire_all()
    assert db.session.get(NumberSequence, ("CC", 2026)).last_value == total
