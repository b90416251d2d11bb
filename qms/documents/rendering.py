"""Markdown authored in the app, rendered to HTML and sanitised (documents may contain anything a user typed)."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")

ALLOWED_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "code", "pre",
                "blockquote", "table", "thead", "tbody", "tr", "th", "td", "a"}


def render_markdown(text: str) -> str:
    """Safe HTML for display: raw HTML in the source is not rendered, and the result is sanitised again."""
    html = _md.render(text or "")
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href", "title"}}, url_schemes={"http", "https",
                                                                                                   "mailto"},
                     link_rel="noopener noreferrer")
