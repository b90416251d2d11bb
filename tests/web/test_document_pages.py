"""Document control through the pages, as its users and an inspector see it: creating a document and its revisions,
routing, the signing ceremony (password + code), release, the controlled copy, the signature manifest, and the
refusals a user meets on the way."""

from __future__ import annotations

import html
import io
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditTransaction
from core.db import db
from core.testing.pages import alerts, count, events, field_errors
from features.support.documents import tiny_pdf
from qms.documents.models import Document, Revision
from signatures.models import Signature
from testkit.plugin import PASSWORD, csrf_token, login, post_form, totp_code

EXPECTED_RE = re.compile(r'<input[^>]*name="expected_version"[^>]*value="(\d*)"')
TAG_RE = re.compile(r"<[^>]+>")


# --- helpers ---------------------------------------------------------------------------------------------------------


def text_of(response) -> str:
    """The page as a reader sees it: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(TAG_RE.sub(" ", response.get_data(as_text=True))).split())










def fresh_revision(revision_id: int) -> Revision:
    db.session.expire_all()
    return db.session.get(Revision, revision_id)


def signatures_of(revision_id: int) -> list[Signature]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Signature).where(Signature.record_type == "qms_document_revision",
                                                              Signature.record_id == revision_id)
                                   .order_by(Signature.id)))


def rev_url(doc_id: int, rev_id: int, suffix: str = "") -> str:
    return f"/documents/{doc_id}/revisions/{rev_id}{suffix}"


def create_document(client, p, number: str = "SOP-QA-001", title: str = "Cleaning of the mixer",
                    doc_type: str = "SOP", **extra):
    data = {"number": number, "title": title, "doc_type": doc_type, "department_id": str(p.department_id),
            "owner_id": str(p.author.id), "review_interval_months": "24", "training_window_days": "14",
            "audience": [str(p.job_function_id)], **extra}
    return post_form(client, "/documents/new", data)


def document_by_number(number: str) -> Document | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(Document).where(Document.number == number))


def new_revision(client, doc_id: int, content: str, kind: str = "major", summary: str = "First issue") -> int:
    page = client.get(f"/documents/{doc_id}/revisions/new")
    assert page.status_code == 200, (page.status_code, text_of(page)[:2000])
    response = post_form(client, f"/documents/{doc_id}/revisions/new",
                         {"kind": kind, "change_summary": summary, "reason": "Procedure needed",
                          "content_markdown": content})
    assert response.status_code == 302, text_of(response)[:2000]
    match = re.search(r"/revisions/(\d+)$", response.headers.get("Location", ""))
    assert match, response.headers["Location"]
    return int(match.group(1))


def set_routing(client, doc_id: int, rev_id: int, reviewers, approvers):
    return post_form(client, rev_url(doc_id, rev_id, "/routing"),
                     {"reviewers": [str(u.id) for u in reviewers], "approvers": [str(u.id) for u in approvers]},
                     token_from=rev_url(doc_id, rev_id))


def sign(client, user, doc_id: int, rev_id: int, action: str, *, password: str = PASSWORD,
         expected_version: str | None = None, **extra):
    """Open the signing dialog (for its CSRF token and the version shown), then sign like the user would."""
    url = rev_url(doc_id, rev_id, f"/{action}")
    page = client.get(url)
    assert page.status_code == 200, text_of(page)[:2000]
    body = page.get_data(as_text=True)
    token = csrf_token(client, url)
    shown = EXPECTED_RE.search(body)
    assert shown, "the signing dialog carries the version of the record it shows"
    meaning = re.search(r'<input type="hidden" name="meaning" value="([^"]+)"', body).group(1)
    data = {"password": password, "totp_code": totp_code(user), "meaning": html.unescape(meaning),
            "comment": "", "expected_version": shown.group(1) if expected_version is None else expected_version,
            "csrf_token": token, **extra}
    return client.post(url, data=data)


@pytest.fixture
def clients(app, p):
    """One browser per person, each logged in through the real pages."""
    result = {}
    for name in ("author", "reviewer", "qa", "operator"):
        c = app.test_client()
        assert login(c, getattr(p, name)).status_code == 302
        result[name] = c
    return result


def draft(clients, p, number: str = "SOP-QA-001", content: str = "# Purpose\n\nClean the mixer.\n",
          doc_type: str = "SOP", title: str = "Cleaning of the mixer") -> tuple[int, int]:
    response = create_document(clients["author"], p, number=number, doc_type=doc_type, title=title)
    assert response.status_code == 302, text_of(response)[:2000]
    doc = document_by_number(number)
    rev_id = new_revision(clients["author"], doc.id, content)
    response = set_routing(clients["author"], doc.id, rev_id, [p.reviewer], [p.qa])
    assert response.status_code == 302, text_of(response)[:2000]
    return doc.id, rev_id


def in_review(clients, p, **kwargs) -> tuple[int, int]:
    doc_id, rev_id = draft(clients, p, **kwargs)
    response = sign(clients["author"], p.author, doc_id, rev_id, "submit")
    assert response.status_code == 302, text_of(response)[:2000]
    response = sign(clients["reviewer"], p.reviewer, doc_id, rev_id, "review")
    assert response.status_code == 302, text_of(response)[:2000]
    return doc_id, rev_id


def effective(app, clients, p, **kwargs) -> tuple[int, int, date]:
    doc_id, rev_id = in_review(clients, p, **kwargs)
    on = clock.now_utc().date() + timedelta(days=7)
    response = sign(clients["qa"], p.qa, doc_id, rev_id, "approve", effective_on=on.isoformat())
    assert response.status_code == 302, text_of(response)[:2000]
    result = app.test_cli_runner().invoke(args=["qms", "release-due", "--date", on.isoformat()])
    assert result.exit_code == 0, result.output
    return doc_id, rev_id, on


# --- 1. the whole journey --------------------------------------------------------------------------------------------


def test_the_journey_from_new_document_to_effective_revision_through_the_pages(app, clients, p):
    author = clients["author"]
    response = create_document(author, p)
    assert response.status_code == 302
    doc = document_by_number("SOP-QA-001")
    assert response.headers["Location"].endswith(f"/documents/{doc.id}/revisions/new")
    assert "SOP-QA-001 was created" in " ".join(alerts(author.get(response.headers["Location"])))

    rev_id = new_revision(author, doc.id, "# Purpose\n\nClean the mixer.\n")
    page = author.get(rev_url(doc.id, rev_id))
    assert "Draft revision 1.0 created" in " ".join(alerts(page))
    assert "Draft" in text_of(page) and "Clean the mixer." in text_of(page)

    response = set_routing(author, doc.id, rev_id, [p.reviewer], [p.qa])
    assert response.status_code == 302
    page = author.get(rev_url(doc.id, rev_id))
    assert "Routing saved." in alerts(page)

    response = sign(author, p.author, doc.id, rev_id, "submit")
    assert response.status_code == 302, text_of(response)[:2000]
    page = author.get(response.headers["Location"])
    assert any("is now In review" in a for a in alerts(page)), alerts(page)

    # the reviewer's page offers the review; the dialog names what is signed and its meaning
    dialog = clients["reviewer"].get(rev_url(doc.id, rev_id, "/review"))
    assert "SOP-QA-001 revision 1.0" in text_of(dialog) and "Reviewed" in text_of(dialog)
    response = sign(clients["reviewer"], p.reviewer, doc.id, rev_id, "review")
    assert response.status_code == 302, text_of(response)[:2000]

    on = clock.now_utc().date() + timedelta(days=10)
    response = sign(clients["qa"], p.qa, doc.id, rev_id, "approve", effective_on=on.isoformat())
    assert response.status_code == 302, text_of(response)[:2000]
    rev = fresh_revision(rev_id)
    assert rev.status_label.startswith("Approved") and rev.effective_on == on

    result = app.test_cli_runner().invoke(args=["qms", "release-due", "--date", on.isoformat()])
    assert result.exit_code == 0, result.output
    assert f"SOP-QA-001 revision 1.0 effective from {on}" in result.output

    page = text_of(clients["operator"].get(rev_url(doc.id, rev_id)))
    assert "Effective" in page and on.isoformat() in page
    sigs = signatures_of(rev_id)
    assert [(s.printed_name, s.meaning) for s in sigs] == [
        ("Ada Author", "Authored"), ("Sam Supervisor", "Reviewed"), ("Quinn QA", "Approved")]
    for s in sigs:
        shown = f"{s.signed_at.strftime('%Y-%m-%d %H:%M:%S')} UTC (UTC+00:00)"
        assert re.search(rf"{s.printed_name} {s.meaning} {re.escape(shown)} .*? Valid", page), (s.printed_name, page)
    # the register lists it as effective
    register = text_of(clients["operator"].get("/documents/?status=effective"))
    assert "SOP-QA-001 Cleaning of the mixer SOP 1.0 Effective 1.0" in register


# --- 2. and 3. refusals of the signing ceremony ----------------------------------------------------------------------


def test_a_wrong_password_is_refused_with_401_and_signs_nothing(clients, p):
    doc_id, rev_id = draft(clients, p)
    version = fresh_revision(rev_id).row_version
    before = len(events("signature.failure"))

    response = sign(clients["author"], p.author, doc_id, rev_id, "submit", password="not-my-password")
    assert response.status_code == 401
    assert any("password or authentication code is not correct" in a for a in alerts(response)), alerts(response)
    rev = fresh_revision(rev_id)
    assert rev.status_label == "Draft" and rev.row_version == version
    assert signatures_of(rev_id) == []
    assert len(events("signature.failure")) == before + 1


def test_a_stale_dialog_is_refused_with_409(clients, p):
    doc_id, rev_id = draft(clients, p)
    version = fresh_revision(rev_id).row_version
    # the author edits the draft after opening the dialog elsewhere
    response = post_form(clients["author"], rev_url(doc_id, rev_id, "/edit"),
                         {"change_summary": "First issue, corrected", "reason": "Procedure needed",
                          "content_markdown": "# Purpose\n\nClean the mixer daily.\n",
                          "expected_version": str(version)})
    assert response.status_code == 302, text_of(response)[:2000]
    assert fresh_revision(rev_id).row_version != version

    response = sign(clients["author"], p.author, doc_id, rev_id, "submit", expected_version=str(version))
    assert response.status_code == 409
    assert any("changed since the page was loaded" in a for a in alerts(response)), alerts(response)
    assert signatures_of(rev_id) == []
    assert fresh_revision(rev_id).status_label == "Draft"


# --- 4. and 5. controlled copy and manifest --------------------------------------------------------------------------


def test_the_controlled_copy_names_the_revision_its_signatures_and_who_printed_it(app, clients, p):
    from pypdf import PdfReader

    doc_id, rev_id, _ = effective(app, clients, p)
    before = len(events("document.printed"))
    response = clients["operator"].get(rev_url(doc_id, rev_id, "/controlled-copy.pdf"))
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    text = " ".join(" ".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(response.data)).pages)
                    .split())
    for expected in ("SOP-QA-001", "1.0", "Effective", "printed by Otto Operator", "Ada Author", "Authored",
                     "Sam Supervisor", "Reviewed", "Quinn QA", "Approved"):
        assert expected in text, (expected, text)
    printed = events("document.printed")
    assert len(printed) == before + 1
    tx = db.session.get(AuditTransaction, printed[-1].transaction_id)
    assert "SOP-QA-001" in printed[-1].detail and tx.user_id == p.operator.id


def test_the_signature_manifest_download_verifies(app, clients, p, tmp_path):
    from signatures.manifest import verify_manifest

    doc_id, rev_id, _ = effective(app, clients, p)
    response = clients["operator"].get(rev_url(doc_id, rev_id, "/manifest.xml"))
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert verify_manifest(response.data) == []
    file = tmp_path / "manifest.xml"
    file.write_bytes(response.data)
    result = app.test_cli_runner().invoke(args=["signatures", "verify-manifest", str(file)])
    assert result.exit_code == 0, result.output
    assert "manifest valid: 3 signatures checked" in result.output


# --- 6. tampering ----------------------------------------------------------------------------------------------------


def test_content_altered_behind_the_application_shows_the_signatures_as_invalid(app, clients, p):
    doc_id, rev_id, _ = effective(app, clients, p)
    assert "Invalid: record altered after signing" not in text_of(clients["operator"].get(rev_url(doc_id, rev_id)))
    # end the read transaction the shared test session still holds (each real request has its own session)
    db.session.rollback()
    with db.engine.begin() as conn:
        changed = conn.execute(sa.text("UPDATE qms_document_revision SET content_markdown = :c WHERE id = :id"),
                               {"c": "# Purpose\n\nSkip the cleaning.\n", "id": rev_id}).rowcount
    assert changed == 1
    db.session.expire_all()
    page = text_of(clients["operator"].get(rev_url(doc_id, rev_id)))
    assert page.count("Invalid: record altered after signing") == 3, page


# --- 7. bad input ----------------------------------------------------------------------------------------------------


def test_a_duplicate_or_malformed_number_is_refused_naming_the_rule(clients, p):
    assert create_document(clients["author"], p).status_code == 302
    response = create_document(clients["author"], p, title="Another")
    assert response.status_code == 422
    assert any("already exists" in e and "unique" in e for e in field_errors(response)), field_errors(response)

    response = create_document(clients["author"], p, number="not a number!")
    assert response.status_code == 422
    assert any("does not match the numbering format" in e for e in field_errors(response)), field_errors(response)
    assert count(Document) == 1


def test_uploading_a_file_that_is_not_a_pdf_is_refused_and_writes_nothing(clients, p):
    assert create_document(clients["author"], p).status_code == 302
    doc = document_by_number("SOP-QA-001")
    url = f"/documents/{doc.id}/revisions/new"
    token = csrf_token(clients["author"], url)
    response = clients["author"].post(url, data={
        "kind": "major", "change_summary": "First issue", "reason": "Procedure needed", "content_markdown": "",
        "content_pdf": (io.BytesIO(b"hello"), "x.pdf"), "csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert any("not a PDF" in e for e in field_errors(response)), field_errors(response)
    assert count(Revision) == 0

    # a real PDF is accepted
    token = csrf_token(clients["author"], url)
    response = clients["author"].post(url, data={
        "kind": "major", "change_summary": "First issue", "reason": "Procedure needed", "content_markdown": "",
        "content_pdf": (io.BytesIO(tiny_pdf()), "sop.pdf"), "csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 302, text_of(response)[:2000]
    rev = db.session.scalar(sa.select(Revision))
    assert rev.content_format == "pdf" and rev.content_filename == "sop.pdf"
    assert clients["operator"].get(rev_url(doc.id, rev.id, "/content.pdf")).data.startswith(b"%PDF-")


# --- 8. register, diff, permissions ----------------------------------------------------------------------------------


def test_the_register_filters_and_the_diff_shows_the_change_and_an_operator_only_reads(app, clients, p):
    doc_id, rev_id, _ = effective(app, clients, p, content="# Purpose\n\nClean the mixer weekly.\n")
    draft(clients, p, number="WI-QA-002", doc_type="WI", title="Weighing of powders")
    operator = clients["operator"]

    def listed(query: str) -> set[str]:
        page = text_of(operator.get(f"/documents/?{query}"))
        return {n for n in ("SOP-QA-001", "WI-QA-002") if n in page}

    assert listed("") == {"SOP-QA-001", "WI-QA-002"}
    assert listed("status=effective") == {"SOP-QA-001"}
    assert listed("status=draft") == {"WI-QA-002"}
    assert listed("type=WI") == {"WI-QA-002"}
    assert listed("type=SOP") == {"SOP-QA-001"}
    assert listed("q=powders") == {"WI-QA-002"}
    assert listed("q=sop-qa") == {"SOP-QA-001"}
    assert listed("q=nothing-like-this") == set()

    v11 = new_revision(clients["author"], doc_id, "# Purpose\n\nClean the mixer daily.\n", kind="minor",
                       summary="Clean daily")
    assert fresh_revision(v11).label == "1.1"
    page = operator.get(f"/documents/{doc_id}/diff?from={rev_id}&to={v11}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "revision 1.0 → 1.1" in text_of(page)
    left = re.findall(r'<td class="diff-left"><pre class="mb-0">(.*?)</pre>', body, re.S)
    right = re.findall(r'<td class="diff-right"><pre class="mb-0">(.*?)</pre>', body, re.S)
    assert "Clean the mixer weekly." in left and "Clean the mixer daily." in right
    assert "1 changed" in text_of(page)

    assert operator.get(f"/documents/{doc_id}").status_code == 200
    assert operator.get(rev_url(doc_id, v11)).status_code == 200
    assert "Clean the mixer daily." in text_of(operator.get(rev_url(doc_id, v11)))
    denied = operator.get(rev_url(doc_id, v11, "/approve"))
    assert denied.status_code == 403
    assert "documents.approve" in text_of(denied)
    assert operator.get("/documents/new").status_code == 403


# --- 9. rejection ----------------------------------------------------------------------------------------------------


def test_rejection_needs_a_comment_and_returns_the_revision_to_draft(clients, p):
    doc_id, rev_id = in_review(clients, p)
    response = sign(clients["qa"], p.qa, doc_id, rev_id, "reject")
    assert response.status_code == 422
    assert any("comment" in e.lower() for e in field_errors(response) + alerts(response)), \
        (field_errors(response), alerts(response))
    rev = fresh_revision(rev_id)
    assert rev.status_label == "In review" and len(signatures_of(rev_id)) == 2

    response = sign(clients["qa"], p.qa, doc_id, rev_id, "reject", comment="Step 3 is missing the dilution.")
    assert response.status_code == 302, text_of(response)[:2000]
    assert fresh_revision(rev_id).status_label == "Draft"
    page = text_of(clients["author"].get(rev_url(doc_id, rev_id)))
    assert "Draft" in page and "Step 3 is missing the dilution." in page
    assert page.count("Earlier submission") == 3, page


# --- the document page, its settings, periodic reviews ---------------------------------------------------------------


def test_the_document_page_names_its_audience_and_settings_change_with_a_reason(app, clients, p):
    doc_id, rev_id, on = effective(app, clients, p)
    page = text_of(clients["operator"].get(f"/documents/{doc_id}"))
    assert "Effective revision 1.0 since " + on.isoformat() in page
    assert "OP-MIX" in page and "Mixing operator" in page, page

    url = f"/documents/{doc_id}/settings"
    data = {"department_id": str(p.department_id), "owner_id": str(p.author.id), "review_interval_months": "12",
            "training_window_days": "7", "audience": [str(p.job_function_id)], "reason": ""}
    response = post_form(clients["author"], url, data)
    assert response.status_code == 422
    assert any("reason" in e.lower() for e in field_errors(response)), field_errors(response)
    response = post_form(clients["author"], url, {**data, "reason": "Annual review is required for this SOP"})
    assert response.status_code == 302, text_of(response)[:2000]
    assert "12 months / 7 days" in text_of(clients["operator"].get(f"/documents/{doc_id}"))

    assert "No periodic review is overdue" in text_of(clients["operator"].get("/documents/reviews-due"))


def test_a_pdf_draft_keeps_its_pdf_when_only_its_summary_is_edited(clients, p):
    assert create_document(clients["author"], p).status_code == 302
    doc = document_by_number("SOP-QA-001")
    url = f"/documents/{doc.id}/revisions/new"
    token = csrf_token(clients["author"], url)
    response = clients["author"].post(url, data={
        "kind": "major", "change_summary": "First issue", "reason": "Procedure needed", "content_markdown": "",
        "content_pdf": (io.BytesIO(tiny_pdf()), "sop.pdf"), "csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 302
    rev = db.session.scalar(sa.select(Revision))
    edit = rev_url(doc.id, rev.id, "/edit")
    page = clients["author"].get(edit)
    assert page.status_code == 200
    version = EXPECTED_RE.search(page.get_data(as_text=True)).group(1)
    token = csrf_token(clients["author"], edit)
    response = clients["author"].post(edit, data={
        "change_summary": "First issue of the SOP", "reason": "Procedure needed", "content_markdown": "",
        "expected_version": version, "csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 302, (field_errors(response), alerts(response))
    rev = fresh_revision(rev.id)
    assert rev.change_summary == "First issue of the SOP" and rev.content_format == "pdf"
    assert rev.content_pdf.startswith(b"%PDF-")


# --- edge cases found in review ---------------------------------------------------------------------------------------


def test_a_malformed_version_in_the_signing_form_is_refused_as_stale_not_a_server_error(app, clients, p):
    doc_id, rev_id = draft(clients, p)
    response = sign(clients["author"], p.author, doc_id, rev_id, "submit", expected_version="1.5abc")
    assert response.status_code == 409
    assert "changed since the page was loaded" in " ".join(alerts(response))
    assert signatures_of(rev_id) == []
    assert fresh_revision(rev_id).status == "draft"


def test_an_id_beyond_any_database_integer_is_not_found(app, clients, p):
    response = clients["operator"].get("/documents/99999999999999999999")
    assert response.status_code == 404


def test_content_too_wide_for_a_printed_page_is_refused_when_saved(app, clients, p):
    response = create_document(clients["author"], p)
    doc = document_by_number("SOP-QA-001")
    wide = "|" + "|".join(f"c{i}" for i in range(60)) + "|\n|" + "|".join("-" for _ in range(60)) + "|\n"
    response = post_form(clients["author"], f"/documents/{doc.id}/revisions/new",
                         {"kind": "major", "change_summary": "Wide table", "reason": "Test",
                          "content_markdown": wide})
    assert response.status_code == 422
    assert any("cannot be printed as a controlled copy" in e for e in field_errors(response))
    assert count(Revision) == 0


def test_a_copy_of_a_revision_that_is_not_effective_says_not_for_use(app, clients, p):
    from pypdf import PdfReader

    doc_id, rev_id = draft(clients, p)
    response = clients["operator"].get(rev_url(doc_id, rev_id, "/controlled-copy.pdf"))
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    assert "DRAFT — NOT FOR USE" in text
    assert "Reference copy printed by Otto Operator" in text


def test_making_obsolete_is_signed_with_its_own_meaning(app, clients, p):
    doc_id, rev_id, _on = effective(app, clients, p)
    response = sign(clients["qa"], p.qa, doc_id, rev_id, "obsolete", reason="Process moved to another site")
    assert response.status_code == 302, text_of(response)[:2000]
    last = signatures_of(rev_id)[-1]
    assert (last.meaning, last.comment) == ("Made obsolete", "Process moved to another site")
    assert fresh_revision(rev_id).status == "obsolete"


def test_a_periodic_review_is_signed_and_moves_the_next_due_date_one_interval_ahead(app, clients, p):
    from qms import rules
    from qms.documents import services

    doc_id, rev_id, on = effective(app, clients, p)
    later = on.replace(year=on.year + 3)
    assert fresh_revision(rev_id) in services.reviews_due(later)
    response = sign(clients["qa"], p.qa, doc_id, rev_id, "periodic-review", comment="")
    assert response.status_code == 422  # the outcome is required
    response = sign(clients["qa"], p.qa, doc_id, rev_id, "periodic-review", comment="Still accurate; no change")
    assert response.status_code == 302, text_of(response)[:2000]
    revision = fresh_revision(rev_id)
    interval = revision.document.review_interval_months
    assert revision.review_due_on == rules.add_months(clock.now_utc().date(), interval)
    last = signatures_of(rev_id)[-1]
    assert (last.meaning, last.comment) == ("Reviewed", "Periodic review: Still accurate; no change")
    assert clients["operator"].get(rev_url(doc_id, rev_id, "/periodic-review")).status_code == 403


def test_signing_after_the_session_expired_sends_the_signer_to_log_in_and_writes_nothing(app, clients, p):
    doc_id, rev_id = draft(clients, p)
    url = rev_url(doc_id, rev_id, "/submit")
    body = clients["author"].get(url).get_data(as_text=True)
    token = csrf_token(clients["author"], url)
    shown = EXPECTED_RE.search(body).group(1)
    idle = app.config["ATTEST_SESSION_IDLE_MINUTES"]
    clock.freeze(clock.now_utc() + timedelta(minutes=idle + 1))
    response = clients["author"].post(url, data={"password": PASSWORD, "totp_code": totp_code(p.author),
                                                 "meaning": "Authored", "expected_version": shown,
                                                 "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert signatures_of(rev_id) == []
    assert fresh_revision(rev_id).status == "draft"
