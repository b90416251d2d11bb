"""Hostile input on every form: each POST route of the app, posted by a user allowed to use it, with form data that
hypothesis makes from the form's own fields (read from the page that shows the form) and hostile values: empty,
10k+ characters, right-to-left and zero-width characters, NUL, numbers out of range, negative ids and ids of other
records, impossible dates, SQL, HTML and template snippets, several values where one is expected, missing and extra
fields, unwanted files.

The answer is never a 500. It is a success (2xx or a redirect) or a 4xx that tells the user what is wrong (a message
or an error under the field it names), and a 4xx writes nothing but the security events the refusal itself records
(a failed signature, a denied permission): no record, no version row, no other audit event.

The signing ceremonies are fuzzed with a wrong password or a wrong second-factor code only (their successful path
needs a valid TOTP code); the failures counted toward lockout are cleared between examples so that a locked account
never hides what follows. `ATTEST_FUZZ_EXAMPLES` sets the examples per route (default 12).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.auth.access import AUTHENTICATED, PUBLIC
from core.auth.permissions import ROLES
from core.db import db
from core.testing.pages import alerts, field_errors
from testkit.plugin import CSRF_RE, PASSWORD, login
from tests.web.fuzz_helpers import hostile_text, snapshot
from tests.web.route_examples import _example_ids, post_example_ids

EXAMPLES = int(os.environ.get("ATTEST_FUZZ_EXAMPLES", "12"))
APP_PACKAGES = {"core", "signatures", "training", "lms", "qms", "validation"}

# who posts: the first role in this order holding the view's permission (the administrator only for what nobody
# else may do: it signs and edits nothing)
ROLE_PREFERENCE = ("qa_approver", "document_author", "training_coordinator", "supervisor", "validation_engineer",
                   "operator", "auditor", "system_admin")


def _post_endpoints() -> list[str]:
    from app import create_app

    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "collection-only-secret-key-0123456789abcdef",
                      "TESTING": True})
    return sorted({rule.endpoint for rule in app.url_map.iter_rules()
                   if "POST" in rule.methods and rule.endpoint != "static"})


POST_ENDPOINTS = _post_endpoints()


# --- reading forms from pages ----------------------------------------------------------------------------------------


@dataclass
class Field:
    name: str
    kind: str  # text, textarea, select, checkbox, radio, date, number, email, password, hidden, file, ...
    values: list[str] = field(default_factory=list)  # option values, the checkbox's value or the pre-filled value


@dataclass
class Form:
    action: str | None
    fields: dict[str, Field] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: Field | None = None
        self._textarea: Field | None = None

    def _add(self, name: str | None, kind: str, value: str | None = None) -> Field | None:
        if self._form is None or not name or name == "csrf_token":
            return None
        f = self._form.fields.setdefault(name, Field(name, kind))
        if value is not None and value not in f.values:
            f.values.append(value)
        return f

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            if (a.get("method") or "get").lower() == "post":
                self._form = Form(a.get("action"))
                self.forms.append(self._form)
            else:
                self._form = None
        elif tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind not in ("submit", "button", "reset", "image"):
                self._add(a.get("name"), kind, a.get("value") if kind != "file" else None)
        elif tag == "select":
            self._select = self._add(a.get("name"), "select")
        elif tag == "option" and self._select is not None and a.get("value") is not None:
            if a["value"] not in self._select.values:
                self._select.values.append(a["value"])
        elif tag == "textarea":
            self._textarea = self._add(a.get("name"), "textarea")
        elif tag == "button" and a.get("name"):
            self._add(a["name"], "button", a.get("value") or "")

    def handle_data(self, data):
        if self._textarea is not None and data.strip() and data not in self._textarea.values:
            self._textarea.values.append(data)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def forms_on(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


# --- hostile values --------------------------------------------------------------------------------------------------

EXTRA_NAMES = ["id", "user_id", "owner_id", "status", "created_at", "approved_by", "role", "roles", "is_admin",
               "next", "version", "expected_version", "signer_id", "meaning"]


HR_CSV = ("username,name,email,site,department,job_functions,supervisor,active\n"
          "zed.new,Zed New,zed@example.com,EX,EXD,EX-OPR,supervisor,yes\n"
          "operator,Renamed \u202eOperator,operator@example.com,EX,,EX-OPR;NOPE,operator,no\n")
FILES = st.builds(lambda body, name: (io.BytesIO(body), name), st.sampled_from(
    [HR_CSV.encode(), HR_CSV.encode("utf-16"), b"", b"%PDF-1.4 not really", b"\x00" * 64,
     b"username,full_name\n\xff\xfe,\x00\n", "é,\u202e\n".encode(), b"a," * 5000, HR_CSV.encode() * 200]),
    st.sampled_from(["x.pdf", "hr.csv", "../../x.pdf", "", "x" * 300]))


def plausible_values(f: Field, *, real_password: bool) -> list[str]:
    """What a person would send: the page's own options and values, a sensible text or date."""
    values = [v for v in f.values if len(v) < 5000]
    if f.kind in ("text", "textarea"):
        values.append("A reason long enough to pass")
    if f.kind == "textarea":
        values.append(HR_CSV)  # the HR import carries its file back in a textarea
    if f.kind == "date":
        values += ["2030-01-01", "2020-01-01"]
    if real_password and f.kind == "password":
        values.append(PASSWORD)  # the right password, with a wrong second factor
    return values


def value_strategy(f: Field, ids: list[str], *, real_password: bool) -> st.SearchStrategy:
    plausible = plausible_values(f, real_password=real_password)
    scalar = st.one_of(st.sampled_from(plausible), hostile_text(*ids)) if plausible else hostile_text(*ids)
    if f.kind == "file":
        return st.one_of(FILES, scalar)
    return st.one_of(scalar, st.lists(scalar, min_size=2, max_size=3))


MISSING = object()


@st.composite
def _one_field_off(draw, fields: dict[str, Field], ids: list[str], real_password: bool) -> dict:
    """A form as a person would fill it, with one or two fields missing or hostile: past the form's own checks,
    into the services, where a 500 or a half-written record would hide."""
    data: dict[str, Any] = {}
    for name, f in fields.items():
        values = plausible_values(f, real_password=real_password)
        if f.kind == "file":
            data[name] = draw(FILES)
        elif values:
            data[name] = draw(st.sampled_from(values))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)) if fields else []:
        data[name] = draw(st.one_of(st.just(MISSING), value_strategy(fields[name], ids, real_password=real_password)))
    return data


def form_data(fields: dict[str, Field], ids: list[str], *, real_password: bool) -> st.SearchStrategy[dict]:
    anything = st.fixed_dictionaries({
        name: st.one_of(st.just(MISSING), value_strategy(f, ids, real_password=real_password))
        for name, f in fields.items()})
    extras = st.dictionaries(st.sampled_from(EXTRA_NAMES) | st.text(min_size=1, max_size=12),
                             hostile_text(*ids), max_size=2)
    return st.builds(lambda chosen, extra: {**{k: v for k, v in extra.items() if k != "csrf_token"},
                                            **{k: v for k, v in chosen.items() if v is not MISSING}},
                     st.one_of(anything, _one_field_off(fields, ids, real_password)), extras)


# --- between examples -----------------------------------------------------------------------------------------------


def clear_failures() -> None:
    """Wrong passwords and codes count toward lockout: clear the count so no example inherits a locked account."""
    from core.auth.models import UserSecurity

    with db.engine.begin() as conn:
        conn.execute(sa.update(UserSecurity).values(failed_attempts=0, locked_at=None))
    db.session.expire_all()


# --- who posts what where --------------------------------------------------------------------------------------------


def poster_role(permission: str) -> str | None:
    if permission == PUBLIC:
        return None
    if permission == AUTHENTICATED:
        return "operator"
    return next(code for code in ROLE_PREFERENCE if permission in ROLES[code].permissions)


def find_form(client, path: str, has_get: bool) -> tuple[str, Form | None]:
    """(page showing the form, the form posting to `path`): the page itself, else the nearest page above it."""
    candidates = [path] if has_get else []
    parts = path.rstrip("/").split("/")
    for n in range(len(parts) - 1, 0, -1):
        parent = "/".join(parts[:n]) or "/"
        candidates += [parent, parent + "/"] if parent != "/" else [parent]
    for page in candidates:
        response = client.get(page)
        if response.status_code != 200 or not response.mimetype.startswith("text/html"):
            continue
        for form in forms_on(response.get_data(as_text=True)):
            action = (form.action or "").split("?")[0]
            if action == path or action.rstrip("/") == path.rstrip("/") or (not action and page == path):
                return page, form
    return (path if has_get else "/"), None


def csrf(client, page: str) -> str | None:
    match = CSRF_RE.search(client.get(page).get_data(as_text=True))
    return (match.group(1) or match.group(2)) if match else None


def message_of(response) -> list[str]:
    """What the page tells the user: flash messages, field errors, or the error page's text (JSON 'message')."""
    if response.is_json:
        body = response.get_json(silent=True) or {}
        return [body["message"]] if body.get("message") else []
    found = alerts(response) + field_errors(response)
    if not found:
        found = [m.strip() for m in re.findall(r'<p class="card-text">(.*?)</p>', response.get_data(as_text=True),
                                              re.S) if m.strip()]
    return found


WTFORMS_KINDS = {"StringField": "text", "TextAreaField": "textarea", "SelectField": "select", "DateField": "date",
                 "IntegerField": "number", "BooleanField": "checkbox", "HiddenField": "hidden", "FileField": "file",
                 "PasswordField": "password", "MultiCheckboxField": "select", "SelectMultipleField": "select",
                 "RadioField": "radio", "DateTimeLocalField": "datetime-local", "EmailField": "email"}


def form_from_view(app, endpoint: str) -> Form:
    """The fields of the WTForms classes a view (or a module-level helper it calls) instantiates, for a form that
    the example records' state does not show (e.g. "Unlock" appears only for a locked account)."""
    import inspect

    view = app.view_functions[endpoint]
    view = inspect.unwrap(view)
    module = inspect.getmodule(view)
    sources = [(inspect.getsource(view), module)]
    # helpers the view calls: its module's own (_helper) and the application's shared ones (module.helper), whose
    # forms are looked up in the helper's own module
    for prefix, helper in set(re.findall(r"\b(?:(\w+)\.)?(_?[a-z]\w*)\(", sources[0][0])):
        owner = getattr(module, prefix, None) if prefix else module
        target = getattr(owner, helper, None)
        if inspect.isfunction(target) and target.__module__.split(".")[0] in APP_PACKAGES:
            sources.append((inspect.getsource(target), inspect.getmodule(target)))
    form = Form(None)
    with app.test_request_context():
        for source, home in sources:
            for name in re.findall(r"\b([A-Z]\w*Form)\(", source):
                form_class = getattr(home, name, None)
                if form_class is None:
                    continue
                for f in form_class(meta={"csrf": False}):
                    form.fields.setdefault(f.name, Field(f.name, WTFORMS_KINDS.get(f.type, "text"),
                                                         [str(f.data)] if f.data not in (None, "") else []))
    return form


@pytest.fixture
def no_background_runs(monkeypatch):
    """A validation run that could start is never launched as a process."""
    from validation import views

    monkeypatch.setattr(views, "launch", lambda run_id: None)


def flashed(client) -> list[tuple[str, str]]:
    """The messages a redirect left for the next page (taken, as that page would)."""
    with client.session_transaction() as session:
        return list(session.pop("_flashes", []))


def _rewind(data: dict) -> None:
    for value in data.values():
        if isinstance(value, tuple) and hasattr(value[0], "seek"):
            value[0].seek(0)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_hostile_form_input_is_refused_cleanly(app, users, make_user, no_background_runs, endpoint):
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint and "POST" in r.methods)
    role = poster_role(app.view_functions[endpoint].required_permission)
    if endpoint == "auth.totp_enroll":  # only someone without a second factor yet gets this form
        poster = make_user("fuzz.enrol", roles={"operator"}, totp=False)
    else:
        poster = users[role] if role else None
    example = post_example_ids(app, users, poster if poster in users.values() else None)
    path = rule.build({k: v for k, v in example.items() if k in rule.arguments}, append_unknown=False)[1]
    ids = sorted({str(v) for v in example.values() if isinstance(v, int)} | {"-1", "0", str(2**31), str(2**63)})
    pending = users["operator"]  # whose password login_totp's examples have just accepted

    def new_client():
        client = app.test_client()
        if poster is not None:
            assert login(client, poster).status_code == 302
        elif endpoint == "auth.login_totp":
            response = client.post("/login", data={"username": pending.username, "password": PASSWORD,
                                                   "csrf_token": csrf(client, "/login")})
            assert response.headers.get("Location", "").endswith("/login/code")
        return client

    client = new_client()
    page, form = find_form(client, path, "GET" in rule.methods)
    if form is None:
        form = form_from_view(app, endpoint)
    signing = "totp_code" in form.fields
    strategy = form_data(form.fields, ids, real_password=signing)
    state = {"client": client, "token": csrf(client, page), "baseline": snapshot()}

    def fresh_session() -> None:
        """After a success (which may log out, change or end the session): a signed-in client and a valid token."""
        token = None
        if poster is not None and endpoint != "auth.logout":
            response = state["client"].get(page)
            match = CSRF_RE.search(response.get_data(as_text=True)) if response.status_code == 200 else None
            token = (match.group(1) or match.group(2)) if match else None
        if token is None:
            state["client"] = new_client()
            token = csrf(state["client"], page)
        state["token"] = token

    @settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(data=strategy)
    def post(data):
        if poster is None:  # a fresh visitor per example (a login that succeeded is not theirs to keep)
            fresh_session()
            state["baseline"] = snapshot()
        response = state["client"].post(path, data={**data, "csrf_token": state["token"]})
        if response.status_code == 400 and "Form expired" in response.get_data(as_text=True):
            fresh_session()  # the session changed under the token (not the input's doing): once more
            _rewind(data)
            response = state["client"].post(path, data={**data, "csrf_token": state["token"]})
        status = response.status_code
        assert status < 500, f"{endpoint}: {status} for {data!r:.300}"
        flashes = flashed(state["client"]) if 300 <= status < 400 else []
        refused = status >= 400 or any(category == "danger" for category, _ in flashes)
        if refused:
            told = message_of(response) + [message for category, message in flashes if category == "danger"]
            assert told, f"{endpoint}: {status} without a message for {data!r:.300}"
            if status == 422:
                assert alerts(response) or field_errors(response), f"{endpoint}: 422 names no field: {told}"
            assert snapshot() == state["baseline"], f"{endpoint}: refused ({status}: {told}) but wrote"
        else:
            fresh_session()  # (logging in again is audited: before the new baseline)
            state["baseline"] = snapshot()
        clear_failures()

    post()


# --- what the fuzzing found, one regression test each ----------------------------------------------------------------


def test_a_signature_without_its_meaning_says_so(app, users):
    """The meaning travels in a hidden field: sent without it (or with another), the refusal showed no message."""
    example = _example_ids(app, users)
    client = app.test_client()
    assert login(client, users["qa_approver"]).status_code == 302
    path = f"/capa/{example['capa_id']}/close"
    before = snapshot()
    response = client.post(path, data={"password": PASSWORD, "csrf_token": csrf(client, path)})
    assert response.status_code == 422
    assert "Meaning of this signature: Choose a meaning." in field_errors(response)
    forged = client.post(path, data={"password": PASSWORD, "meaning": "Approved by nobody",
                                     "csrf_token": csrf(client, path)})
    assert forged.status_code == 422
    assert "Meaning of this signature: Not a valid choice." in field_errors(forged)
    assert snapshot() == before


@pytest.mark.parametrize("number", [str(2**31), str(2**63), "-" + str(2**63)])
def test_an_id_no_database_column_holds_is_a_field_error(app, users, number):
    """Selects that check their choices in the service (validate_choice=False) passed any integer to the database,
    which overflowed (SQLite above 2**63, PostgreSQL above 2**31): a 500."""
    example = post_example_ids(app, users)
    client = app.test_client()
    assert login(client, users["training_coordinator"]).status_code == 302
    before = snapshot()
    edit = f"/org/job-functions/{example['job_function_id']}/edit"
    response = client.post(edit, data={"name": "Example operator", "department_id": number, "reason": "Moved",
                                       "csrf_token": csrf(client, edit)})
    assert response.status_code == 422
    assert "Department: Invalid Choice: could not coerce." in field_errors(response)
    person = f"/training/people/{example['username']}"
    response = client.post(f"{person}/job-functions", data={"job_function_id": number, "valid_from": "2024-01-01",
                                                            "csrf_token": csrf(client, person)})
    assert response.status_code == 422
    assert "Job function: Invalid Choice: could not coerce." in " ".join(field_errors(response))
    assert snapshot() == before


def test_a_nul_character_is_refused_naming_its_field(app, users):
    """PostgreSQL cannot store or compare text holding NUL: a form field or search with one answered 500 there."""
    client = app.test_client()
    assert login(client, users["system_admin"]).status_code == 302
    before = snapshot()
    response = client.post("/org/sites/new", data={"code": "NUL", "name": "Site\x00", "timezone": "UTC",
                                                   "csrf_token": csrf(client, "/org/sites/new")})
    assert response.status_code == 400
    assert "The value of “name” contains a NUL character (U+0000)" in message_of(response)[0]
    assert client.get("/admin/users/?q=ad%00min").status_code == 400
    assert snapshot() == before


@pytest.mark.parametrize("moment", ["0001-01-01T00:00", "9999-12-31T23:59"])
def test_a_moment_off_the_calendar_in_utc_is_a_field_error(app, users, moment):
    """A local time in the first or last hours of the calendar lies outside it in UTC for a viewer east or west of
    Greenwich: converting it raised OverflowError (500) in the deviation form, the qualification lookup and the audit
    log's date filters."""
    from core.db import transaction
    from core.org import Department

    post_example_ids(app, users)
    user = users["qa_approver"]
    with transaction():
        user.timezone = "Asia/Tokyo" if moment.startswith("0001") else "America/New_York"
    client = app.test_client()
    assert login(client, user).status_code == 302
    department = db.session.scalar(sa.select(Department))
    before = snapshot()
    response = client.post("/deviations/new", data={
        "title": "Off the calendar", "occurred_at": moment, "discovered_at": moment, "site_id": department.site_id,
        "department_id": department.id, "description": "Fuzz", "csrf_token": csrf(client, "/deviations/new")})
    assert response.status_code == 422
    assert "Occurred at: This moment lies outside the years 1 to 9999 in UTC." in field_errors(response)
    lookup = client.get("/training/qualification", query_string={"at": moment})
    assert lookup.status_code == 422
    assert any("outside the years 1 to 9999" in e for e in field_errors(lookup))
    day = moment[:10]
    assert client.get("/audit/", query_string={"date_from": day, "date_to": day}).status_code == 200
    assert snapshot() == before


def test_a_filter_id_no_database_column_holds_is_ignored(app, users):
    """The people list's filters passed any integer to the query, which overflowed on PostgreSQL (500)."""
    post_example_ids(app, users)
    client = app.test_client()
    assert login(client, users["training_coordinator"]).status_code == 302
    for name in ("department", "job_function"):
        assert client.get("/training/people/", query_string={name: str(2**40)}).status_code == 200
