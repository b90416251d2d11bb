"""Controlled copies: a PDF rendition of a revision with a header and footer on every page (number, revision,
status, effective date, who printed it and when, in UTC) and a final page with every signature's manifestation."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from html import unescape

from fpdf.errors import FPDFException
from pypdf import PdfReader, PdfWriter

from core.pdf import RecordPdf, font_codepoints


@dataclass(frozen=True)
class SignatureLine:
    printed_name: str
    meaning: str
    signed_at: datetime
    auth_method: str
    status: str  # "valid", "earlier" (an earlier submission) or "invalid" (content altered after signing)
    comment: str | None = None


@dataclass(frozen=True)
class CopyInfo:
    number: str
    title: str
    revision: str
    status: str
    effective_on: date | None
    printed_by: str
    printed_at: datetime
    content_sha256: str


class _Pdf(RecordPdf):
    """A controlled copy's pages: the document and revision on top, who printed it when at the foot."""

    def __init__(self, info: CopyInfo, *, page_offset: int = 0, total_pages: int | None = None,
                 core_font: bool = False):
        super().__init__(core_font=core_font)
        self.info = info
        self.page_offset = page_offset
        self.total_pages = total_pages

    def header(self) -> None:
        i = self.info
        effective = i.effective_on.isoformat() if i.effective_on else "not yet effective"
        # only the effective revision is a controlled copy for use; anything else says so on every page
        self.running_header(f"{i.number}  {i.title}",
                            f"Revision {i.revision} · Status: {i.status} · Effective date: {effective}",
                            banner=None if i.status == "Effective" else f"{i.status.upper()} — NOT FOR USE")

    def footer(self) -> None:
        i = self.info
        stamp = i.printed_at.strftime("%Y-%m-%d %H:%M:%S")
        kind = "Controlled copy" if i.status == "Effective" else "Reference copy"
        self.running_footer([f"{kind} printed by {i.printed_by} at {stamp} UTC; valid on the day printed only",
                             f"Content SHA-256 (file): {i.content_sha256}"],
                            page=self.page_no() + self.page_offset, total=self.total_pages)

    def signature_page(self, lines: list[SignatureLine]) -> None:
        self.add_page()
        self.set_font(self.family, "B", 13)
        self.cell(0, 8, "Electronic signatures", new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 9)
        self.multi_cell(0, 5, self.text_safe(
            "Each signature below is an electronic signature under 21 CFR Part 11, bound to the SHA-256 of this "
            "revision's signed record (document identity, revision, change summary, reason and the content's "
            "SHA-256). Times are UTC."), new_x="LMARGIN", new_y="NEXT")
        self.ln(3)
        if not lines:
            self.cell(0, 6, "No signatures.", new_x="LMARGIN", new_y="NEXT")
        for line in lines:
            self.set_font(self.family, "B", 10)
            self.cell(0, 6, self.text_safe(f"{line.printed_name} — {line.meaning}"), new_x="LMARGIN", new_y="NEXT")
            self.set_font(self.family, "", 9)
            status = {"valid": "Valid", "earlier": "Earlier submission (the revision was revised since)"}.get(
                line.status, "INVALID: record altered after signing")
            self.cell(0, 5, self.text_safe(f"{line.signed_at.strftime('%Y-%m-%d %H:%M:%S')} UTC · "
                                           f"authenticated by {line.auth_method} · {status}"),
                      new_x="LMARGIN", new_y="NEXT")
            if line.comment:
                self.multi_cell(0, 5, self.text_safe(f"Comment: {line.comment}"), new_x="LMARGIN", new_y="NEXT")
            self.ln(2)


class NotRenderable(ValueError):
    """Content that cannot be laid out faithfully on an A4 page."""


_TAG_RE = re.compile(r"<[^>]+>")


def check_renderable(html: str) -> None:
    """Raise NotRenderable when the content would not appear faithfully in a controlled copy: characters the PDF
    font cannot show, or a layout the page cannot hold (checked with the metrics of a core font, which is fast)."""
    text = unescape(_TAG_RE.sub("", html))
    codepoints = font_codepoints()
    missing = sorted({c for c in text if ord(c) not in codepoints and not c.isspace()})
    if missing:
        raise NotRenderable(f"the PDF font cannot show these characters: {' '.join(missing[:20])}")
    pdf = _Pdf(CopyInfo("X", "X", "0.1", "Draft", None, "check", datetime(2000, 1, 1), "0" * 64), core_font=True)
    try:
        pdf.add_page()
        pdf.write_html(pdf.text_safe(html))
    except FPDFException as exc:
        raise NotRenderable(f"its layout does not fit an A4 page ({exc})") from None


def controlled_copy_markdown(info: CopyInfo, html: str, signatures: list[SignatureLine]) -> bytes:
    """`html` is the sanitised rendering of the revision's Markdown (qms.documents.rendering)."""
    pdf = _Pdf(info)
    pdf.add_page()
    pdf.write_html(pdf.text_safe(html))
    pdf.signature_page(signatures)
    return bytes(pdf.output())


def controlled_copy_pdf(info: CopyInfo, content: bytes, signatures: list[SignatureLine]) -> bytes:
    """Stamp header and footer onto every page of an uploaded PDF and append the signature page."""
    reader = PdfReader(io.BytesIO(content))
    total = len(reader.pages) + 1
    writer = PdfWriter(clone_from=reader)
    for n, page in enumerate(writer.pages):
        width_pt, height_pt = float(page.mediabox.width), float(page.mediabox.height)
        overlay = _Pdf(info, page_offset=n, total_pages=total)
        overlay.set_auto_page_break(False)
        overlay.add_page(format=(width_pt * 25.4 / 72, height_pt * 25.4 / 72))
        page.merge_page(PdfReader(io.BytesIO(bytes(overlay.output()))).pages[0])
    sig = _Pdf(info, page_offset=total - 1, total_pages=total)
    sig.signature_page(signatures)
    writer.append(PdfReader(io.BytesIO(bytes(sig.output()))))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
