"""The lifecycle declaration as pure logic: the order of the check and its messages, the buttons it offers, the text
rules and the documentation it writes. (Applying a transition needs a database: tests/web/test_lifecycle_walk.py and
each record type's lifecycle tests.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core.errors import InvalidTransition, NotPermitted, ValidationError
from signatures.lifecycle import (
    UNCHANGED,
    Lifecycle,
    SystemTransition,
    Transition,
    comment,
    justification,
    never,
    only,
    required_comment,
)


@dataclass
class Person:
    id: int
    permissions: set[str] = field(default_factory=set)
    active: bool = True
    is_authenticated: bool = True

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass
class Memo:
    """A record with a status, an owner and a row version, like any quality record."""

    id: int
    owner_id: int
    status: str = "draft"
    row_version: int = 3
    title: str = "Memo"

    def audit_title(self) -> str:
        return f"Memo {self.id}"


OWNER, QA, OTHER = Person(1, {"quality.manage"}), Person(2, {"quality.approve"}), Person(3, {"quality.view"})
MEMO = Lifecycle(
    "unit_test_memo", title="Memo (unit test)", model=Memo, noun="memo",
    labels={"draft": "Draft", "submitted": "Submitted", "approved": "Approved"}, initial="draft", register=False,
    system=[SystemTransition(("approved",), "draft", "reopened by a job")],
    transitions=[
        Transition("submit", "Submit…", ("draft",), "submitted", "quality.manage", "Authored", task="Submitting a memo",
                   rules=(only("owner_id", "the owner only", lambda memo: f"Only the owner of {memo.title}."),)),
        Transition("approve", "Approve…", ("submitted",), "approved", "quality.approve", "Approved", text=comment(),
                   task="Approving a memo", verb="approve",
                   rules=(never("owner_id", "not the owner", lambda memo: "Segregation of duties: not yours."),)),
        Transition("note", "Note", ("submitted", "approved"), UNCHANGED, ("quality.manage", "quality.approve"),
                   text=required_comment("A note", limit=10), task="Noting a memo", offered=lambda memo: memo.id != 9),
    ])


def test_the_check_refuses_permission_then_state_then_rules_then_the_version():
    memo = Memo(1, owner_id=QA.id, status="draft")
    with pytest.raises(NotPermitted, match=r"Approving a memo needs the permission .*\(quality.approve\)"):
        MEMO.check(memo, "approve", OWNER, "3")  # wrong state too: the permission is named first
    with pytest.raises(InvalidTransition, match="Cannot approve Memo 1: it is Draft; only a memo in Submitted can be"):
        MEMO.check(memo, "approve", QA, "1")  # the owner and a stale page too: the state is named first
    memo.status = "submitted"
    with pytest.raises(NotPermitted, match="Segregation of duties"):
        MEMO.check(memo, "approve", QA, "1")
    memo.owner_id = OWNER.id
    with pytest.raises(InvalidTransition, match="Memo 1 changed since the page was loaded"):
        MEMO.check(memo, "approve", QA, "1")
    with pytest.raises(InvalidTransition, match="changed since the page was loaded"):
        MEMO.check(memo, "approve", QA, "")  # a page always sends its version: an empty one is stale
    assert MEMO.check(memo, "approve", QA, " 3 ").action == "approve"


def test_the_buttons_are_the_transitions_the_person_may_take_now():
    memo = Memo(1, owner_id=OWNER.id, status="draft")
    assert [t.action for t in MEMO.available(memo, OWNER)] == ["submit"]
    assert MEMO.available(memo, QA) == [] and MEMO.available(memo, OTHER) == []
    memo.status = "submitted"
    assert [t.action for t in MEMO.available(memo, QA)] == ["approve", "note"]
    assert [t.action for t in MEMO.available(memo, OWNER)] == ["note"]  # never approves their own
    assert MEMO.available(Memo(9, owner_id=1, status="approved"), QA) == []  # not offered
    assert MEMO.available(memo, Person(2, {"quality.approve"}, active=False)) == []


def test_text_rules_strip_require_and_limit_without_cutting():
    note = MEMO["note"].text
    assert note.clean("  seen  ") == "seen"
    with pytest.raises(ValidationError, match="A note is required") as refused:
        note.clean("   ")
    assert refused.value.field == "comment"
    with pytest.raises(ValidationError, match="at most 10 characters"):
        note.clean("x" * 11)
    assert comment().clean("  ") is None
    reason = justification("Reason", what="A reason", missing="Say why.")
    assert reason.field == "reason" and reason.required
    with pytest.raises(ValidationError, match="Say why"):
        reason.clean("")


def test_steps_are_routed_from_the_declaration():
    submit, note = MEMO["submit"], MEMO["note"]
    assert (submit.endpoint_name, submit.url_part, submit.own_page) == ("sign_submit", "submit", True)
    assert (note.endpoint_name, note.own_page, note.permissions) == ("note", True,
                                                                     ("quality.manage", "quality.approve"))
    assert Transition("start", "Start", ("a",), "b", "quality.manage").own_page is False  # a button's POST


def test_the_diagram_and_table_show_every_transition_and_the_systems_moves():
    diagram = MEMO.mermaid()
    assert "[*] --> draft" in diagram and 'state "Submitted" as submitted' in diagram
    assert "draft --> submitted: submit (signed Authored)" in diagram
    assert "approved --> approved: note (unsigned)" in diagram  # an unchanged state is a loop
    assert "approved --> draft: reopened by a job (system)" in diagram
    rows = MEMO.table()
    assert rows[1][:6] == ["`approve`", "Approve", "Submitted", "Approved", "quality.approve", "Approved"]
    assert rows[1][7] == "not the owner" and rows[-1][4] == "the system"


def test_a_system_move_follows_only_a_declared_system_transition():
    memo = Memo(7, OWNER.id, status="approved")
    MEMO.move(memo, "draft")  # declared: reopened by a job
    assert memo.status == "draft"
    with pytest.raises(InvalidTransition, match="Memo 7 cannot move from Draft to Approved: no declared system move"):
        MEMO.move(memo, "approved")  # a person's step is never taken by the system
    assert memo.status == "draft"
