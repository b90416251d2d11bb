"""The HR import page: a training coordinator uploads the HR file, reads the check (changes and errors), and applies
exactly the plan shown, with a reason; nobody else can use it."""

from __future__ import annotations

import html
import io
import re

import pytest
import sqlalchemy as sa

from core.audit import AuditTransaction
from core.auth import services as accounts
from core.auth.models import User
from core.db import db
from core.testing.pages import alerts, count, field_errors
from testkit.plugin import csrf_token, login, post_form
from training.models import UserJobFunction

HEADER = "username,name,email,site,department,job_functions,supervisor,active"
PAGE = "/training/import/"
TEXTAREA_RE = re.compile(r'<textarea[^>]*name="csv_text"[^>]*>\r?\n?(.*?)</textarea>', re.S)
FINGERPRINT_RE = re.compile(r'name="fingerprint" type="hidden" value="([0-9a-f]*)"')
TAG_RE = re.compile(r"<[^>]+>")


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def text_of(response) -> str:
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())


def fresh_user(username: str) -> User | None:
    db.session.expire_all()
    return accounts.get_by_username(username)


@pytest.fixture
def browser(app, p, coordinator, make_user):
    make_user("lea.leaver", roles={"operator"}, full_name="Lea Leaver")
    client = app.test_client()
    assert login(client, coordinator).status_code == 302
    return client


def check(client, text: str, filename: str = "hr.csv"):
    return post_form(client, "/training/import/check", {"file": (io.BytesIO(text.encode()), filename)},
                     token_from=PAGE, content_type="multipart/form-data")


def apply_checked(client, page, reason: str | None = "Monthly HR import", file: str | None = None):
    """Submit the apply form of a check page as a browser does (line breaks of a form field sent as CRLF)."""
    body = page.get_data(as_text=True)
    data = {"csrf_token": csrf_token(client, PAGE), "fingerprint": FINGERPRINT_RE.search(body).group(1),
            "reason": reason or ""}
    carried = TEXTAREA_RE.search(body)
    if carried:
        data["csv_text"] = html.unescape(carried.group(1)).replace("\n", "\r\n")
    if file is not None:
        data["file"] = (io.BytesIO(file.encode()), "hr.csv")
    return client.post("/training/import/apply", data=data, content_type="multipart/form-data")


def test_only_training_coordinators_can_open_or_use_the_import(app, p, client):
    assert login(client, p.operator).status_code == 302
    assert client.get(PAGE).status_code == 403
    before = count(User)
    response = post_form(client, "/training/import/check",
                         {"file": (io.BytesIO(csv_text("nina.new,Nina New,nina@example.com,,,,,yes").encode()),
                                   "hr.csv")}, token_from="/account", content_type="multipart/form-data")
    assert response.status_code == 403
    assert "(training.manage)" in response.get_data(as_text=True)
    assert count(User) == before


def test_checking_a_file_shows_what_would_change_and_writes_nothing(app, browser):
    assert "Check file" in browser.get(PAGE).get_data(as_text=True)
    before = count(User), count(AuditTransaction)
    text = csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX,sam.supervisor,yes",
                    "otto.operator,Otto Operator-Smith,otto.operator@example.com,MAIN,QA,,,yes",
                    "lea.leaver,Lea Leaver,lea@example.com,,,,,no")

    page = check(browser, text)

    assert page.status_code == 200
    shown = text_of(page)
    assert "1 to create 1 to update 1 to deactivate 0 unchanged 0 errors" in shown
    assert "2 nina.new Nina New nina@example.com MAIN QA sam.supervisor OP-MIX" in shown
    assert "3 otto.operator name Otto Operator Otto Operator-Smith" in shown
    assert "3 otto.operator site — MAIN" in shown
    assert "4 lea.leaver Lea Leaver 0" in shown
    assert "Apply import" in shown
    assert (count(User), count(AuditTransaction)) == before


def test_a_file_with_errors_lists_each_with_row_column_and_rule_and_cannot_be_applied(app, browser):
    page = check(browser, csv_text("nina.new,Nina New,nina-at-example.com,MAIN,QA,OP-MIX,,yes",
                                   "ok.one,Okay One,one@example.com,MAIN,QA,NOPE,,perhaps"))
    assert page.status_code == 200
    shown = text_of(page)
    assert "The file has 3 error(s): nothing can be imported" in shown
    assert "2 email E-mail must be a valid address such as name@example.com." in shown
    assert "3 job_functions There is no job function with code 'NOPE'." in shown
    assert "3 active Active must be yes or no" in shown
    assert "Apply import" not in shown

    unreadable = check(browser, "name,email\nNina,nina@example.com\n")
    assert "file — The first row must name the columns; missing: username" in text_of(unreadable)


def test_applying_the_checked_file_creates_the_people_in_one_audited_transaction(app, browser, p):
    page = check(browser, csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX,zed.lead,yes",
                                   "zed.lead,Zed Lead,zed@example.com,MAIN,QA,,,yes",
                                   "lea.leaver,Lea Leaver,lea@example.com,,,,,no"))

    done = apply_checked(browser, page, reason="HR import of March")

    assert done.status_code == 200, text_of(done)[:2000]
    assert alerts(done) == ["The import was applied: created=2 updated=0 deactivated=1 unchanged=0 errors=0."]
    assert "2 created 0 updated 1 deactivated" in text_of(done)
    nina, zed = fresh_user("nina.new"), fresh_user("zed.lead")
    assert nina.role_codes == {"operator"} and nina.supervisor_id == zed.id
    assert db.session.scalar(sa.select(UserJobFunction.job_function_id)
                             .where(UserJobFunction.user_id == nina.id)) == p.job_function_id
    assert not fresh_user("lea.leaver").active
    txs = db.session.scalars(sa.select(AuditTransaction).where(AuditTransaction.reason == "HR import of March")).all()
    assert [(tx.username, tx.channel) for tx in txs] == [("cora.coord", "web")]  # one transaction for it all

    again = check(browser, csv_text("nina.new,Nina New,nina@example.com,MAIN,QA,OP-MIX,zed.lead,yes"))
    assert "Nothing to change: Attest already matches the file." in text_of(again)


def test_applying_without_a_reason_is_refused_and_changes_nothing(app, browser):
    page = check(browser, csv_text("nina.new,Nina New,nina@example.com,,,,,yes"))
    refused = apply_checked(browser, page, reason=None)
    assert refused.status_code == 422
    assert "Reason for change: Reason for change is required." in field_errors(refused)
    assert "Apply import" in text_of(refused)  # the same check, ready to apply with a reason
    assert fresh_user("nina.new") is None


def test_a_plan_that_changed_since_the_check_is_not_applied(app, browser, make_user):
    page = check(browser, csv_text("nina.new,Nina New,nina@example.com,,,,,yes",
                                   "otto.operator,Otto Operator,otto.operator@example.com,,,,,no"))
    make_user("nina.new", full_name="Nina Newer")  # someone created her meanwhile

    refused = apply_checked(browser, page)

    assert refused.status_code == 409
    assert alerts(refused)[0].startswith("This is not what the check showed")
    assert fresh_user("otto.operator").active and fresh_user("nina.new").full_name == "Nina Newer"
    assert "otto.operator" in text_of(refused) and "name Nina Newer Nina New" in text_of(refused)
    assert apply_checked(browser, refused).status_code == 200  # the refreshed check can be applied
    assert not fresh_user("otto.operator").active and fresh_user("nina.new").full_name == "Nina New"


def test_a_file_too_large_to_carry_in_the_page_is_selected_again(app, browser):
    app.config["MAX_FORM_MEMORY_SIZE"] = 70 * 1024  # leaves ~5 KB for the file once the other fields are counted
    text = csv_text(*(f"person.{n:03},Person Number {n},person.{n:03}@example.com,MAIN,QA,OP-MIX,,yes"
                      for n in range(100)))
    page = check(browser, text)
    assert TEXTAREA_RE.search(page.get_data(as_text=True)) is None
    assert "select the file you checked" in text_of(page)

    other = apply_checked(browser, page, file=text.replace("Person Number 7,", "Person Number Seven,"))
    assert other.status_code == 409 and fresh_user("person.000") is None

    done = apply_checked(browser, page, file=text)
    assert done.status_code == 200, text_of(done)[:2000]
    assert count(User) >= 100 and fresh_user("person.099").active
