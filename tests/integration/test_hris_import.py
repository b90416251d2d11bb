"""Importing people from the HR system: the dry run shows every change and every row error and writes nothing; applying
is one transaction that creates, updates and deactivates accounts and reconciles their training; importing the same
file again changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy_continuum import version_class

from core import clock
from core.audit import AuditTransaction
from core.auth import services as accounts
from core.auth.models import User
from core.db import db, transaction
from core.errors import NotPermitted, ValidationError
from core.org import Department, JobFunction
from features.support.documents import count, effective_revision, new_document, setup_people
from training import engine
from training.hr_import import services as hris
from training.models import CANCELLED, OPEN, TrainingAssignment, UserJobFunction

HEADER = "username,name,email,site,department,job_functions,supervisor,active"


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.fixture
def p(make_user):
    people = setup_people(make_user)  # site MAIN, department QA, job function OP-MIX; clock frozen
    with transaction():
        qa = db.session.get(Department, people.department_id)
        db.session.add_all([Department(site_id=qa.site_id, code="PRD", name="Production"),
                            JobFunction(code="OP-PKG", name="Packaging operator"),
                            JobFunction(code="OP-OLD", name="Retired function", active=False)])
    make_user("lea.leaver", roles={"operator"}, full_name="Lea Leaver")
    return people


def function_id(code: str) -> int:
    return db.session.scalar(sa.select(JobFunction.id).where(JobFunction.code == code))


def user(username: str) -> User | None:
    db.session.expire_all()
    return accounts.get_by_username(username)


def hold(person, code: str) -> None:
    """`person` holds the job function since a month and is assigned what it requires."""
    with transaction():
        db.session.add(UserJobFunction(user_id=person.id, job_function_id=function_id(code),
                                       valid_from=clock.now_utc().date() - timedelta(days=30)))
        db.session.flush()
        engine.reconcile_user(person.id, reason="set-up")


def held_codes(username: str) -> list[str]:
    return sorted(db.session.scalars(
        sa.select(JobFunction.code).join(UserJobFunction, UserJobFunction.job_function_id == JobFunction.id)
        .join(User, User.id == UserJobFunction.user_id)
        .where(User.username == username, UserJobFunction.valid_to.is_(None))))


def assignments(username: str) -> list[TrainingAssignment]:
    return list(db.session.scalars(sa.select(TrainingAssignment).join(User, User.id == TrainingAssignment.user_id)
                                   .where(User.username == username).order_by(TrainingAssignment.id)))


def audit_rows() -> tuple[int, ...]:
    """Everything an import can write: accounts, job functions held, assignments, their versions, audit transactions."""
    models = (User, UserJobFunction, TrainingAssignment)
    return (*(count(m) for m in models), *(count(version_class(m)) for m in models), count(AuditTransaction))


def run_import(text: str, actor, reason: str | None = "Monthly HR import"):
    with transaction(reason=reason):
        return hris.apply(text, actor=actor)


def otto_row(**changes: str) -> str:
    """otto.operator exactly as setup_people created him, with `changes`."""
    values = {"username": "otto.operator", "name": "Otto Operator", "email": "otto.operator@example.com", "site": "",
              "department": "", "job_functions": "", "supervisor": "", "active": "yes", **changes}
    return ",".join(values[c] for c in hris.COLUMNS)


# --- the dry run ------------------------------------------------------------------------------------------------------


def test_the_dry_run_lists_creations_updates_and_deactivations_and_writes_nothing(app, p, coordinator):
    hold(user("lea.leaver"), "OP-MIX")
    text = csv_text(
        "Nina.New,Nina New,nina@example.com,MAIN,QA,OP-MIX;OP-PKG,sam.supervisor,yes",
        otto_row(name="Otto Operator-Smith", site="MAIN", department="PRD", job_functions="OP-MIX",
                 supervisor="nina.new"),
        "lea.leaver,Lea Leaver,lea@example.com,,,,,no",
        "sam.supervisor,Sam Supervisor,sam.supervisor@example.com,,,,,yes",
        "long.gone,Long Gone,gone@example.com,,,,,no",
    )
    before = audit_rows()

    plan = hris.plan(text, actor=coordinator)

    assert plan.errors == []
    assert [(c.row, c.username, c.site, c.department, c.supervisor, c.job_functions) for c in plan.creations] == [
        (2, "nina.new", "MAIN", "QA", "sam.supervisor", ("OP-MIX", "OP-PKG"))]
    [update] = plan.updates
    assert (update.row, update.username, update.added, update.ended) == (3, "otto.operator", ("OP-MIX",), ())
    assert [(c.column, c.old, c.new) for c in update.changes] == [
        ("name", "Otto Operator", "Otto Operator-Smith"), ("site", "", "MAIN"), ("department", "", "PRD"),
        ("supervisor", "", "nina.new")]
    assert [(d.row, d.username, d.open_training) for d in plan.deactivations] == [(4, "lea.leaver", 0)]
    assert plan.unchanged == 2  # sam.supervisor as he is, and a leaver who never had an account
    assert plan.summary() == "created=1 updated=1 deactivated=1 unchanged=2 errors=0"
    assert audit_rows() == before
    assert user("nina.new") is None and user("lea.leaver").active


def test_every_row_error_is_reported_with_its_row_column_and_rule_and_nothing_can_be_applied(app, p, coordinator,
                                                                                              make_user):
    gone = make_user("gone.person", roles={"operator"})
    with transaction(reason="Left"):
        accounts.deactivate_account(gone, actor=None)
    text = csv_text(
        "Bad Name!,Valid Name,valid@example.com,,,,,yes",                    # 2
        "ok.one,Al,not-an-email,,,,,yes",                                    # 3: two errors in one row
        "ok.two,Okay Two,two@example.com,NOPE,,,,yes",                       # 4
        "ok.three,Okay Three,three@example.com,,QA,,,yes",                   # 5
        "ok.four,Okay Four,four@example.com,MAIN,LAB,OP-MIX|NOPE;OP-OLD,,yes",  # 6: department + two functions
        "ok.five,Okay Five,five@example.com,,,,ok.five,yes",                 # 7
        "ok.six,Okay Six,six@example.com,,,,nobody.here,yes",                # 8
        "ok.two,Okay Two Again,two@example.com,,,,,yes",                     # 9
        "ok.seven,Okay Seven,seven@example.com,,,,,maybe",                   # 10
        "gone.person,Gone Person,gone@example.com,,,,,yes",                  # 11
        "otto.operator,Otto Operator,otto.operator@example.com,,,,ok.eight,yes",  # 12
        "ok.eight,,,,,,,no",                                                 # 13
        "ok.nine,Okay Nine,nine@example.com,,,",                             # 14
        "cora.coord,Cora Coordinator,cora@example.com,,,,,no",               # 15
    )
    before = audit_rows()

    plan = hris.plan(text, actor=coordinator)

    assert [(e.row, e.column) for e in plan.errors] == [
        (2, "username"), (3, "name"), (3, "email"), (4, "site"), (5, "department"), (6, "department"),
        (6, "job_functions"), (6, "job_functions"), (7, "supervisor"), (8, "supervisor"), (9, "username"),
        (10, "active"), (11, "active"), (12, "supervisor"), (14, None), (15, "active")]
    rules = [str(e) for e in plan.errors]
    assert rules[0].startswith("row 2, column username: Username must be 2-64 characters")
    assert "There is no site with code 'NOPE'." in rules[3]
    assert "A department needs its site in column site." in rules[4]
    assert "Site MAIN has no department with code 'LAB'." in rules[5]
    assert "There is no job function with code 'NOPE'." in rules[6]
    assert "Job function OP-OLD is no longer in use." in rules[7]
    assert "cannot be their own supervisor" in rules[8]
    assert "There is no person 'nobody.here' in Attest or in this file." in rules[9]
    assert rules[10] == "row 9, column username: ok.two appears again (first in row 4)."
    assert "Active must be yes or no" in rules[11]
    assert "gone.person is a deactivated account; the import does not restore access" in rules[12]
    assert rules[13] == "row 12, column supervisor: Supervisor ok.eight is deactivated by row 13."
    assert rules[14] == "row 14: The row has 6 values but the first row names 8 columns."
    assert rules[15] == "row 15, column active: You cannot deactivate your own account."
    assert plan.summary().endswith(f"errors={len(plan.errors)}")

    with pytest.raises(ValidationError, match="16 error"):
        run_import(text, coordinator)
    assert audit_rows() == before


@pytest.mark.parametrize(("data", "message"), [
    ("username,name,email,site,department,supervisor,active\nx.y,X Y,x@example.com,,,,yes\n",
     "missing: job_functions"),
    (HEADER + ",email\n", "named twice in the first row: email"),
    ("", "missing: username, name"),
    (HEADER.encode() + b"\nj\xf6rg,J\xf6rg,j@example.com,,,,,yes\n", "not UTF-8 text (byte 70)"),
    (HEADER + "\nx.y,X Y\0,x@example.com,,,,,yes\n", "contains NUL characters"),
    (HEADER + '\nx.y,"' + "X" * 200_000 + '",x@example.com,,,,,yes\n', "not valid CSV after row 1"),
])
def test_a_file_that_cannot_be_read_is_one_file_error(app, p, data, message):
    plan = hris.plan(data)
    assert len(plan.errors) == 1 and plan.errors[0].row is None
    assert message in str(plan.errors[0])
    assert plan.creations == [] and plan.updates == []


def test_files_over_the_size_or_row_limit_are_refused_with_a_message(app, p, monkeypatch):
    rows = [f"p{n},Person {n},p{n}@example.com,,,,,yes" for n in range(4)]
    monkeypatch.setattr(hris, "MAX_ROWS", 3)
    assert [str(e) for e in hris.plan(csv_text(*rows)).errors] == [
        "file: The file has more than 3 rows of people; split it."]
    monkeypatch.setattr(hris, "MAX_BYTES", 100)
    assert "at most 0 MB can be imported at once" in str(hris.plan(csv_text(*rows)).errors[0])


def test_a_utf8_file_with_bom_crlf_and_spaces_is_read_like_a_plain_one(app, p):
    data = ("\ufeff" + HEADER.replace(",", " , ") + "\r\n  Zoe.Zed , Zoë Zed ,zoe@example.com, MAIN , QA ,"
            " OP-MIX | OP-PKG ,,YES\r\n").encode()
    plan = hris.plan(data)
    assert plan.errors == []
    assert [(c.username, c.full_name, c.site, c.department, c.job_functions) for c in plan.creations] == [
        ("zoe.zed", "Zoë Zed", "MAIN", "QA", ("OP-MIX", "OP-PKG"))]


# --- applying ---------------------------------------------------------------------------------------------------------


def test_applying_creates_people_who_get_the_training_their_job_functions_require(app, p, coordinator):
    revision = effective_revision(p, new_document(p))
    text = csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX,zed.lead,yes",
                    "zed.lead,Zed Lead,zed@example.com,MAIN,QA,OP-PKG,sam.supervisor,yes")

    plan = run_import(text, coordinator, reason="New hires of March")

    assert plan.summary() == "created=2 updated=0 deactivated=0 unchanged=0 errors=0"
    nina, zed = user("nina.new"), user("zed.lead")
    assert (nina.full_name, nina.email, nina.site.code, nina.department.code) == ("Nina New", "nina@example.com",
                                                                                  "MAIN", "QA")
    assert nina.supervisor_id == zed.id and zed.supervisor_id == p.reviewer.id
    assert nina.role_codes == {"operator"} and zed.role_codes == {"operator"}
    assert held_codes("nina.new") == ["OP-MIX"] and held_codes("zed.lead") == ["OP-PKG"]
    assert [(a.item.source_id, a.status, a.source_type) for a in assignments("nina.new")] == [
        (revision.id, OPEN, "hris_import")]
    assert assignments("zed.lead") == []  # OP-PKG requires no document
    [version] = db.session.scalars(sa.select(version_class(User)).where(version_class(User).id == nina.id))
    assert db.session.get(AuditTransaction, version.transaction_id).reason == "New hires of March"
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0
    # no usable password: an administrator gives access with a password reset
    assert nina.security.must_change_password
    with transaction():
        assert not accounts.authenticate("nina.new", hris.NO_PASSWORD).ok


def test_applying_updates_profiles_and_moves_people_between_job_functions_keeping_shared_training(app, p,
                                                                                                 coordinator):
    shared = new_document(p, number="SOP-QA-002", audience_job_function_ids=[function_id("OP-MIX"),
                                                                              function_id("OP-PKG")])
    mixing_only = new_document(p)
    shared_rev, mixing_rev = effective_revision(p, shared), effective_revision(p, mixing_only)
    hold(p.operator, "OP-MIX")
    text = csv_text(otto_row(email="otto@example.com", site="MAIN", department="PRD", job_functions="OP-PKG",
                             supervisor="sam.supervisor"))

    run_import(text, coordinator)

    otto = user("otto.operator")
    assert (otto.email, otto.department.code, otto.supervisor_id) == ("otto@example.com", "PRD", p.reviewer.id)
    assert held_codes("otto.operator") == ["OP-PKG"]
    status = {a.item.source_id: (a.status, a.closed_reason) for a in assignments("otto.operator")}
    assert status[shared_rev.id] == (OPEN, None)  # still required by OP-PKG: not cancelled and re-created
    assert status[mixing_rev.id][0] == CANCELLED and "OP-MIX ended" in status[mixing_rev.id][1]
    assert len(status) == 2


def test_a_deactivation_row_deactivates_the_account_and_cancels_open_training(app, p, coordinator):
    revision = effective_revision(p, new_document(p))
    hold(p.operator, "OP-MIX")
    text = csv_text(otto_row(active="no"))
    assert [d.open_training for d in hris.plan(text).deactivations] == [1]

    run_import(text, coordinator, reason="Left the company (HR)")

    assert not user("otto.operator").active
    assert [(a.item.source_id, a.status, a.closed_reason) for a in assignments("otto.operator")] == [
        (revision.id, CANCELLED, "Account deactivated")]


def test_importing_the_same_file_again_changes_nothing(app, p, coordinator):
    effective_revision(p, new_document(p))
    text = csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX;OP-PKG,zed.lead,yes",
                    "zed.lead,Zed Lead,zed@example.com,MAIN,PRD,,,yes",
                    otto_row(site="MAIN", job_functions="OP-MIX", supervisor="zed.lead"),
                    "lea.leaver,,,,,,,no")
    run_import(text, coordinator)
    before = audit_rows()

    again = hris.plan(text, actor=coordinator)
    assert again.summary() == "created=0 updated=0 deactivated=0 unchanged=4 errors=0"
    assert run_import(text, coordinator).changes == 0
    assert audit_rows() == before


def test_a_file_with_any_error_changes_nothing_not_even_its_valid_rows(app, p, coordinator):
    text = csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX,,yes", otto_row(active="no"),
                    "bad.row,Bad Row,bad@example.com,NOWHERE,,,,yes")
    before = audit_rows()
    with pytest.raises(ValidationError, match="1 error"):
        run_import(text, coordinator)
    assert audit_rows() == before
    assert user("nina.new") is None and user("otto.operator").active


def test_only_a_training_coordinator_applies_an_import(app, p):
    before = audit_rows()
    with pytest.raises(NotPermitted, match="training.manage"):
        run_import(csv_text("nina.new,Nina New,nina@example.com,,,,,yes"), p.operator)
    assert audit_rows() == before


def test_applying_requires_a_reason_for_change(app, p, coordinator):
    with pytest.raises(ValidationError, match="reason for change"):
        run_import(csv_text(otto_row(name="Otto Renamed")), coordinator, reason=None)
    assert user("otto.operator").full_name == "Otto Operator"


def test_a_plan_that_changed_since_the_dry_run_is_refused(app, p, coordinator):
    text = csv_text(otto_row(name="Otto Renamed"))
    checked = hris.plan(text, actor=coordinator).fingerprint
    with transaction(reason="Typo"):
        accounts.update_profile(user("otto.operator"), full_name="Otto Operator", email="otto@example.com",
                                site_id=None, department_id=None, supervisor_id=None, timezone=None)
    with pytest.raises(hris.PlanChanged), transaction(reason="Import"):
        hris.apply(text, actor=coordinator, expected_fingerprint=checked)
    assert user("otto.operator").full_name == "Otto Operator"


# --- the command line -------------------------------------------------------------------------------------------------


def test_the_command_dry_runs_by_default_and_applies_with_a_reason(app, p, coordinator, tmp_path):
    path = tmp_path / "hr.csv"
    path.write_text(csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX,,yes", otto_row(active="no")))
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["training", "import-users", str(path)])
    assert dry.exit_code == 0, dry.output
    assert "create nina.new: Nina New <nina@example.com>" in dry.output
    assert "deactivate otto.operator: Otto Operator" in dry.output
    assert dry.output.splitlines()[-1] == "created=1 updated=0 deactivated=1 unchanged=0 errors=0"
    assert user("nina.new") is None

    assert runner.invoke(args=["training", "import-users", str(path), "--apply"]).exit_code == 2  # no reason
    applied = runner.invoke(args=["training", "import-users", str(path), "--apply", "--as", "cora.coord",
                                  "--reason", "HR import of March"])
    assert applied.exit_code == 0, applied.output
    assert applied.output.splitlines()[-1] == "created=1 updated=0 deactivated=1 unchanged=0 errors=0"
    assert user("nina.new").active and not user("otto.operator").active
    tx = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.id.desc())).first()
    assert (tx.username, tx.channel, tx.reason) == ("cora.coord", "cli", "HR import of March")

    again = runner.invoke(args=["training", "import-users", str(path), "--apply", "--reason", "Again"])
    assert again.output.splitlines()[-1] == "created=0 updated=0 deactivated=0 unchanged=2 errors=0"


def test_the_command_prints_every_error_and_exits_non_zero(app, p, tmp_path):
    path = tmp_path / "hr.csv"
    path.write_text(csv_text("nina.new,Nina New,nina@example.com,MAIN,LAB,,,yes", "x,Xavier X,x@example.com,,,,,yes"))
    for extra in ([], ["--apply", "--reason", "Try"]):
        result = app.test_cli_runner().invoke(args=["training", "import-users", str(path), *extra])
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert "row 2, column department: Site MAIN has no department with code 'LAB'." in lines
        assert any(line.startswith("row 3, column username: Username must be") for line in lines)
        assert lines[-1] == "created=0 updated=0 deactivated=0 unchanged=0 errors=2"
    assert user("nina.new") is None


def test_a_coordinator_cannot_change_or_deactivate_accounts_of_people_who_hold_other_roles(app, p, coordinator):
    text = csv_text("rita.reviewer,Rita Renamed,rita.reviewer@example.com,,,,,yes",
                    "quinn.qa,Quinn QA,quinn.qa@example.com,,,,,no")
    plan = hris.plan(text, actor=coordinator)
    assert [(e.row, e.column) for e in plan.errors] == [(2, "username"), (3, "active")]
    assert "rita.reviewer holds the role(s) document_author: only an administrator changes this account" in \
        plan.errors[0].rule
    assert "quinn.qa holds the role(s) qa_approver" in plan.errors[1].rule
