"""Reading what a page or the database shows, for web tests: flash messages, field errors, audit events, and the
forms and links of a page, parsed and submitted as a browser does (every rendered control, hidden ones included)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa

from core.audit import AuditEvent
from core.db import db

ALERT_RE = re.compile(r'<div class="alert alert-[a-z]+" role="alert">(.*?)</div>', re.S)
FIELD_ERROR_RE = re.compile(r'<div class="invalid-feedback d-block">(.*?)</div>', re.S)


def alerts(response) -> list[str]:
    """The flash messages a page shows, as the user reads them."""
    return [html.unescape(m.strip()) for m in ALERT_RE.findall(response.get_data(as_text=True))]


def field_errors(response) -> list[str]:
    """The error messages shown under form fields."""
    return [html.unescape(m.strip()) for m in FIELD_ERROR_RE.findall(response.get_data(as_text=True))]


def events(event_type: str, user=None) -> list[AuditEvent]:
    """Audit events of one type (about one user, when given), oldest first."""
    stmt = sa.select(AuditEvent).where(AuditEvent.event_type == event_type).order_by(AuditEvent.id)
    if user is not None:
        stmt = stmt.where(AuditEvent.subject_user_id == user.id)
    return list(db.session.scalars(stmt))


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def fresh(user):
    """The user as the database holds it now (not as this test's session last saw it)."""
    from core.auth.models import User

    db.session.expire_all()
    return db.session.get(User, user.id)


# --- forms and links as a browser reads and submits them ------------------------------------------------------------


@dataclass
class Control:
    """One form control as rendered: its tag and type, name, value, and whether it is checked or selected."""

    tag: str
    type: str
    name: str
    value: str
    checked: bool = False
    options: list[tuple[str, bool]] = field(default_factory=list)  # (value, selected) of a <select>
    multiple: bool = False


@dataclass
class HtmlForm:
    """A <form> as the page renders it: where it posts, its controls in document order and its text."""

    action: str
    method: str
    controls: list[Control] = field(default_factory=list)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, label) of each submit button
    text: str = ""

    def names(self) -> list[str]:
        return [c.name for c in self.controls]

    def data(self, fill: dict[str, Any] | None = None, button: str | None = None) -> list[tuple[str, str]]:
        """The (name, value) pairs a browser sends, in document order, duplicates included: every control the page
        rendered, with `fill` standing for what the person types or chooses (only fields the page shows can be
        filled: a name the form does not have is an error, as a browser could not send it)."""
        fill = dict(fill or {})
        unknown = set(fill) - set(self.names())
        if unknown:
            raise AssertionError(f"the form posting to {self.action} has no field {sorted(unknown)}; it has "
                                 f"{self.names()}")
        pairs: list[tuple[str, str]] = []
        filled: set[str] = set()
        for c in self.controls:
            if c.type in ("submit", "button", "reset", "image", "file"):
                continue
            if c.name in fill:
                wanted = fill[c.name]
                if c.type in ("checkbox", "radio"):
                    chosen = {str(v) for v in (wanted if isinstance(wanted, list | tuple | set) else [wanted])}
                    if c.value in chosen:
                        pairs.append((c.name, c.value))
                    continue
                if c.name in filled:  # a person types into the field once; other controls of that name stay
                    pairs.append((c.name, c.value))
                    continue
                filled.add(c.name)
                values = wanted if isinstance(wanted, list | tuple) else [wanted]
                pairs.extend((c.name, str(v)) for v in values)
                continue
            if c.type in ("checkbox", "radio"):
                if c.checked:
                    pairs.append((c.name, c.value or "on"))
            elif c.tag == "select":
                selected = [v for v, s in c.options if s] or ([c.options[0][0]] if c.options and not c.multiple
                                                              else [])
                pairs.extend((c.name, v) for v in selected)
            else:
                pairs.append((c.name, c.value))
        if button is not None:
            named = [(n, v) for n, v, label in self.buttons if label == button and n]
            pairs.extend(named[:1])
        return pairs


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self.links: list[tuple[str, str]] = []
        self._form: HtmlForm | None = None
        self._text: list[str] | None = None  # the text of the open <textarea>, <option>, <button> or <a>
        self._open: tuple[str, dict[str, str]] | None = None
        self._select: Control | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = HtmlForm(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._form)
        elif tag == "a" and "href" in a:
            self._open, self._text = ("a", a), []
        elif self._form is None or "disabled" in a:
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "submit":
                self._form.buttons.append((a.get("name", ""), a.get("value", ""), a.get("value", "Submit")))
            elif "name" in a:
                self._form.controls.append(Control("input", kind, a["name"], a.get("value", ""),
                                                   checked="checked" in a))
        elif tag == "textarea" and "name" in a:
            self._open, self._text = ("textarea", a), []
        elif tag == "select" and "name" in a:
            self._select = Control("select", "select", a["name"], "", multiple="multiple" in a)
            self._form.controls.append(self._select)
        elif tag == "option" and self._select is not None:
            self._open, self._text = ("option", a), []
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self._open, self._text = ("button", a), []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
        if self._form is not None:
            self._form.text += data

    def handle_endtag(self, tag):
        if self._open is not None and tag == self._open[0]:
            kind, a = self._open
            text = "".join(self._text or [])
            if kind == "a":
                self.links.append((a["href"], " ".join(text.split())))
            elif kind == "textarea":
                self._form.controls.append(Control("textarea", "textarea", a["name"], text.removeprefix("\n")))
            elif kind == "option":
                self._select.options.append((a.get("value", text.strip()), "selected" in a))
            elif kind == "button":
                self._form.buttons.append((a.get("name", ""), a.get("value", ""), " ".join(text.split())))
            self._open, self._text = None, None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._form = None


def parse_page(response_or_html) -> _PageParser:
    body = response_or_html if isinstance(response_or_html, str) else response_or_html.get_data(as_text=True)
    parser = _PageParser()
    parser.feed(body)
    parser.close()
    return parser


def html_forms(response_or_html) -> list[HtmlForm]:
    """Every <form> of the page, as rendered."""
    return parse_page(response_or_html).forms


def html_links(response_or_html) -> list[tuple[str, str]]:
    """Every link of the page: (href, its text)."""
    return parse_page(response_or_html).links


def submit_form(client, form: HtmlForm, *, page_url: str, fill: dict[str, Any] | None = None,
                button: str | None = None, **kwargs):
    """Submit a form the way a browser does: to its action (the page itself when it has none), with every control
    the page rendered (hidden ones included, duplicates in order) and only `fill` typed in by the person."""
    from werkzeug.datastructures import MultiDict

    url = form.action or page_url
    data = MultiDict(form.data(fill, button))
    if form.method == "post":
        return client.post(url, data=data, **kwargs)
    return client.get(url, query_string=data, **kwargs)
