"""Markdown rendering is sanitised, the revision diff is side by side, and controlled copies carry their stamps."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

from pypdf import PdfReader

from qms.documents.diff import side_by_side, summary
from qms.documents.pdf import CopyInfo, SignatureLine, controlled_copy_markdown, controlled_copy_pdf
from qms.documents.rendering import render_markdown

INFO = CopyInfo(number="SOP-QA-001", title="Cleaning of filling line 3", revision="2.0", status="Effective",
                effective_on=date(2026, 12, 7), printed_by="Quinn Q. Approver",
                printed_at=datetime(2026, 11, 23, 13, 5, 9, tzinfo=UTC), content_sha256="ab" * 32)
SIGS = [SignatureLine("Alice Author", "Authored", datetime(2026, 11, 20, 9, 0, tzinfo=UTC), "password+totp", "valid"),
        SignatureLine("Quinn Q. Approver", "Approved", datetime(2026, 11, 21, 10, 30, tzinfo=UTC), "password+totp",
                      "invalid", "Approved for release")]


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_markdown_is_rendered_and_script_or_javascript_links_are_neutralised():
    html = render_markdown("# Purpose\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) **bold**")
    assert "<h1>Purpose</h1>" in html and "<strong>bold</strong>" in html
    assert "<script" not in html
    assert 'href="javascript' not in html


def test_side_by_side_diff_marks_changed_added_and_removed_lines():
    rows = side_by_side("Scope\nRinse 5 min\nDry\nObsolete step", "Scope\nRinse 10 min\nDry\nNew check")
    assert [r.kind for r in rows] == ["same", "changed", "same", "changed"]
    assert rows[1].left == "Rinse 5 min" and rows[1].right == "Rinse 10 min"
    rows = side_by_side("a\nb", "a\nb\nc")
    assert summary(rows) == {"changed": 0, "removed": 0, "added": 1}


def test_markdown_controlled_copy_has_header_footer_and_a_signature_page():
    pdf = controlled_copy_markdown(INFO, render_markdown("# Purpose\n\nThis SOP describes cleaning."), SIGS)
    text = _text(pdf)
    assert "SOP-QA-001" in text and "Revision 2.0" in text and "Status: Effective" in text
    assert "Effective date: 2026-12-07" in text
    assert "printed by Quinn Q. Approver at 2026-11-23 13:05:09 UTC" in text
    assert "This SOP describes cleaning." in text
    assert "Alice Author — Authored" in text and "2026-11-20 09:00:00 UTC" in text
    assert "Quinn Q. Approver — Approved" in text and "INVALID: record altered after signing" in text
    assert "Page 2 of 2" in text


def test_uploaded_pdf_is_stamped_on_every_page_and_gets_the_signature_page():
    original = controlled_copy_markdown(INFO, render_markdown("one\n\n" + "line\n\n" * 120), [])
    pages = len(PdfReader(io.BytesIO(original)).pages)
    stamped = controlled_copy_pdf(INFO, original, SIGS)
    reader = PdfReader(io.BytesIO(stamped))
    assert len(reader.pages) == pages + 1
    for n, page in enumerate(reader.pages, start=1):
        assert f"Page {n} of {pages + 1}" in page.extract_text()
    assert "Electronic signatures" in reader.pages[-1].extract_text()
