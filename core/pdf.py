"""One frame for every printed record: A4, the same margins, the DejaVu fonts shipped inside Attest (core/fonts, so a
printout never depends on an operating system font package), a running header and a footer with "Page n of m".

Each printed record (a controlled copy, a training record, a validation run report) subclasses `RecordPdf` and says
what its header and footer show through `running_header()` and `running_footer()`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fpdf import FPDF

FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONTS = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf",
         "BI": "DejaVuSans-BoldOblique.ttf"}
LEFT, TOP, RIGHT, BOTTOM = 18, 26, 18, 22


class RecordPdf(FPDF):
    """The page every printed record uses. With `core_font`, a Latin-1 core font instead of DejaVu (fast layout
    checks only: characters outside Latin-1 are replaced)."""

    def __init__(self, *, core_font: bool = False):
        super().__init__(format="A4")
        self.set_auto_page_break(auto=True, margin=BOTTOM)
        self.set_margins(LEFT, TOP, RIGHT)
        if core_font:
            self.family = "Helvetica"
        else:
            for style, name in FONTS.items():
                self.add_font("DejaVu", style, str(FONT_DIR / name))
            self.family = "DejaVu"
        self.set_font(self.family, size=10)

    def text_safe(self, text: str) -> str:
        if self.family == "Helvetica":
            return text.encode("latin-1", "replace").decode("latin-1")
        return text

    def running_header(self, title: str, subtitle: str, *, banner: str | None = None) -> None:
        """Two lines and a rule at the top of every page; `banner` (e.g. "DRAFT — NOT FOR USE") in red above."""
        if banner:
            self.set_text_color(200, 0, 0)
            self.set_font(self.family, "B", 9)
            self.set_xy(LEFT, 3)
            self.cell(0, 4, self.text_safe(banner), align="R")
            self.set_text_color(0, 0, 0)
        self.set_y(8)
        self.set_font(self.family, "B", 9)
        self.cell(0, 5, self.text_safe(title), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 8)
        self.cell(0, 5, self.text_safe(subtitle), new_x="LMARGIN", new_y="NEXT")
        self.line(LEFT, 19, self.w - RIGHT, 19)
        self.set_y(TOP)
        self.set_font(self.family, "", 10)

    def running_footer(self, lines: list[str], *, page: int | None = None, total: int | str | None = None) -> None:
        """Small print at the foot of every page, then "Page n of m" (the final count unless `total` is given)."""
        self.set_y(-19)
        self.set_font(self.family, "", 7)
        for line in lines:
            self.cell(0, 4, self.text_safe(line), new_x="LMARGIN", new_y="NEXT")
        number = self.page_no() if page is None else page
        self.cell(0, 4, f"Page {number} of {'{nb}' if total is None else total}", align="R")

    def keep_together(self, height: float) -> None:
        """Start a new page unless `height` millimetres still fit on this one."""
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()


def utc(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


@lru_cache(maxsize=1)
def font_codepoints() -> frozenset[int]:
    """The characters the shipped font can show."""
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(str(FONT_DIR / FONTS[""]), lazy=True)["cmap"].getBestCmap())
