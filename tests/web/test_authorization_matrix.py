"""The authorisation matrix (tests/web/authorization_matrix.py) is complete and holds for every route, role and method.

Three checks, each catching what the others cannot:
- every route has an entry and every entry is a route: a new route nobody decided on fails, named;
- the matrix agrees with the views' permission_required() decorators through the role x permission matrix
  (core/auth/permissions.py), so a change in either side is caught;
- the sweep: every route, as every role and as an anonymous visitor, with GET and (where the route takes it) a POST
  carrying a valid CSRF token and an empty form. Refused: 403 naming the permission, and a `permission.denied`
  security event (anonymous: the login page, or 401 JSON from the API). Allowed: a GET answers 200; a POST anything
  but 401/403/the login page/a server error. Parametrised URLs use real records (tests/web/route_examples.py).
"""

from __future__ import annotations

import html
import json

import jinja2
import pytest

from core.auth.access import AUTHENTICATED
from core.auth.access import PUBLIC as PUBLIC_VIEW
from core.auth.permissions import PERMISSIONS, ROLES
from core.testing.pages import events
from testkit.plugin import ROLE_CODES, csrf_token, login
from tests.web.authorization_matrix import ALL_ROLES, ANYONE_LOGGED_IN, API_TOKEN, MATRIX, PUBLIC
from tests.web.route_examples import UNCHECKED_ENDPOINTS, api_token_secret, post_example_ids, routes

METHODS = ("GET", "POST")
ALLOWED_POST_STATUSES = {200, 302, 303, 400, 409, 422}  # done, or refused for what the (empty) form lacks
SESSION_ENDING = {("auth.login_totp", "GET"), ("auth.login_totp", "POST"), ("auth.logout", "POST")}
LOGIN_REDIRECT = "/login?next="
CSRF_REFUSED = "Form expired or not sent from Attest"

@pytest.fixture
def app_config():
    # the sweep asks the API without a token once per role; refusals are otherwise limited to 20 a minute
    return {"API_REFUSAL_RATE_LIMIT": "10000 per minute"}


class _CompiledTemplates(jinja2.BytecodeCache):
    """Templates compiled once for the whole sweep, not once per test's app (a fifth of the sweep's time)."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.store[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = _CompiledTemplates()


@pytest.fixture
def fast_sweep(app, monkeypatch):
    """The app, made quicker to sweep: templates compiled once, PDFs in the core font (loading the DejaVu fonts takes
    about a second a PDF, and fonts decide nothing about access)."""
    import core.pdf

    app.jinja_env.bytecode_cache = COMPILED_TEMPLATES
    shipped_fonts = core.pdf.RecordPdf.__init__
    monkeypatch.setattr(core.pdf.RecordPdf, "__init__",
                        lambda self, core_font=False: shipped_fonts(self, core_font=True))


@pytest.fixture(scope="module")
def routes_app():
    """An app for reading its routes and views only (no database is touched)."""
    from app import create_app

    return create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "matrix-test-secret-key-0123456789abcdef",
                       "TESTING": True})


# --- the matrix is complete ------------------------------------------------------------------------------------------


def route_methods(app) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in UNCHECKED_ENDPOINTS:
            found.setdefault(rule.endpoint, set()).update(rule.methods & set(METHODS))
    return found


def completeness_problems(app, matrix=MATRIX) -> list[str]:
    """Routes without an entry, entries without a route, and entries whose methods are not the route's."""
    actual = route_methods(app)
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    problems = [f"route {endpoint} ({'/'.join(sorted(actual[endpoint]))} {rules[endpoint]}) has no entry in "
                f"tests/web/authorization_matrix.py: decide who may use it"
                for endpoint in sorted(actual.keys() - matrix.keys())]
    problems += [f"{endpoint} is in the matrix but the app has no such route"
                 for endpoint in sorted(matrix.keys() - actual.keys())]
    problems += [f"{endpoint} accepts {sorted(actual[endpoint])} but the matrix decides {sorted(matrix[endpoint])}"
                 for endpoint in sorted(actual.keys() & matrix.keys()) if set(matrix[endpoint]) != actual[endpoint]]
    return problems


def test_every_route_has_an_entry_and_every_entry_is_a_route(routes_app):
    assert completeness_problems(routes_app) == []


def test_a_new_route_without_an_entry_is_named_and_a_stale_entry_too():
    from app import create_app

    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "matrix-test-secret-key-0123456789abcdef",
                      "TESTING": True})

    @app.route("/forgotten", methods=["GET", "POST"])
    def forgotten():
        return "nobody decided who may use this"

    stale = {**MATRIX, "documents.destroy": {"POST": ALL_ROLES}}
    assert completeness_problems(app, stale) == [
        "route forgotten (GET/POST /forgotten) has no entry in tests/web/authorization_matrix.py: decide who may "
        "use it",
        "documents.destroy is in the matrix but the app has no such route",
    ]


def test_the_matrix_names_only_real_roles():
    assert ALL_ROLES == set(ROLE_CODES) == set(ROLES)
    for endpoint, methods in MATRIX.items():
        for who in methods.values():
            assert who in (PUBLIC, ANYONE_LOGGED_IN, API_TOKEN) or (who and who <= ALL_ROLES), endpoint


# --- the matrix agrees with the decorators ---------------------------------------------------------------------------


def admitted_by_decorator(view) -> frozenset[str] | str:
    """Who the view's permission_required()/public()/token_only() lets through, in the matrix's terms."""
    needed = view.required_permission
    if needed == PUBLIC_VIEW:
        return API_TOKEN if getattr(view, "sessionless", False) else PUBLIC
    if needed == AUTHENTICATED:
        return ANYONE_LOGGED_IN
    any_of = set(view.required_permissions)
    return frozenset(code for code, role in ROLES.items() if any_of & role.permissions)


def disagreement(app, endpoint: str, method: str) -> str | None:
    decided, gate = MATRIX[endpoint][method], admitted_by_decorator(app.view_functions[endpoint])
    if decided == PUBLIC and gate == API_TOKEN:
        gate = PUBLIC  # a public page of the API (its description) is served without a session too
    if decided == gate:
        return None
    needed = " or ".join(app.view_functions[endpoint].required_permissions)
    if isinstance(decided, frozenset) and isinstance(gate, frozenset):
        return (f"{method} {endpoint}: permission {needed} admits {sorted(gate - decided)} beyond the matrix and "
                f"refuses {sorted(decided - gate)} whom the matrix admits")
    return f"{method} {endpoint}: the matrix decides {decided!r}, the view declares {needed!r}"


def test_the_matrix_agrees_with_each_views_permission_and_the_role_matrix(routes_app):
    problems = [disagreement(routes_app, endpoint, method)
                for endpoint, methods in sorted(MATRIX.items()) for method in methods]
    assert [p for p in problems if p] == []


# --- the sweep: every route x every role (and anonymous) -------------------------------------------------------------


def cells(app, users, viewer) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) of every route: GETs first, then POSTs (which may change the example records), the
    requests that end the session last."""
    example = post_example_ids(app, users, viewer)
    found = [(endpoint, method, path) for method in METHODS for endpoint, path, _ in routes(app, example, method)]
    return sorted(found, key=lambda c: ((c[0], c[1]) in SESSION_ENDING, METHODS.index(c[1]), c[0]))


def send(client, method: str, path: str, token: str):
    return client.get(path) if method == "GET" else client.post(path, data={"csrf_token": token})


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and response.headers.get("Location", "").startswith(LOGIN_REDIRECT)


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True)) if response.mimetype.startswith("text/") else ""


def verdict(app, endpoint: str, method: str, role: str | None, response) -> str | None:
    """What is wrong with the answer to `role` (None: an anonymous visitor) by the matrix; None when it is right."""
    who, status = MATRIX[endpoint][method], response.status_code
    if who == PUBLIC:
        if status in (401, 403) or status >= 500 or is_login_redirect(response):
            return f"a public route answered {status} {response.headers.get('Location', '')}"
        return None
    if who == API_TOKEN:
        if status != 401 or not response.is_json:
            return f"the token API answered {status} ({response.mimetype}) to a request without a token"
        return None
    if role is None:
        return None if is_login_redirect(response) else f"answered {status}, not the login page"
    if who == ANYONE_LOGGED_IN or role in who:
        if method == "GET" and status != 200:
            return f"allowed, but answered {status}: {page_text(response)[:300]}"
        if method == "POST" and (status not in ALLOWED_POST_STATUSES or is_login_redirect(response)
                                 or CSRF_REFUSED in page_text(response)):
            return f"allowed, but the POST answered {status}: {page_text(response)[:300]}"
        return None
    needed = app.view_functions[endpoint].required_permission
    if status != 403:
        return f"refused by the matrix, but answered {status}"
    if f"({needed})" not in page_text(response) or PERMISSIONS[needed].label not in page_text(response):
        return f"403 without naming the permission {needed}"
    return None


@pytest.mark.parametrize("role", ROLE_CODES)
def test_each_role_gets_exactly_what_the_matrix_grants(app, users, fast_sweep, role):
    user = users[role]
    client = app.test_client()
    wrong, expected_denials, checked, needs_login = [], [], 0, True
    for endpoint, method, path in cells(app, users, user):
        if needs_login:  # once, and again after a request that ended the session
            assert login(client, user).status_code == 302
            token = csrf_token(client, "/account")
        needs_login = (endpoint, method) in SESSION_ENDING
        response = send(client, method, path, token)
        checked += 1
        problem = verdict(app, endpoint, method, role, response)
        who = MATRIX[endpoint][method]
        if who == API_TOKEN:  # the owner's own token is what opens it
            with_token = client.get(path, headers={"Authorization": f"Bearer {api_token_secret(app, user)}"})
            if with_token.status_code in (401, 403) or with_token.status_code >= 500 or not with_token.is_json:
                problem = f"the token API refused its owner's token: {with_token.status_code}"
        elif isinstance(who, frozenset) and role not in who:
            needed = " or ".join(app.view_functions[endpoint].required_permissions)
            expected_denials.append(json.dumps({"method": method, "path": path, "permission": needed},
                                               sort_keys=True))
        if problem:
            wrong.append(f"{method} {path} ({endpoint}) as {role}: {problem}")
    assert wrong == []
    assert checked >= 150
    assert sorted(e.detail for e in events("permission.denied", user)) == sorted(expected_denials)


def test_anonymous_visitors_are_sent_to_log_in_everywhere_but_the_public_routes(app, users, client, fast_sweep):
    wrong, checked, token = [], 0, None
    for endpoint, method, path in cells(app, users, None):
        if token is None or (endpoint, method) in SESSION_ENDING:  # the code step clears the session (and its token)
            token = csrf_token(client, "/login")
        response = send(client, method, path, token)
        checked += 1
        problem = verdict(app, endpoint, method, None, response)
        if problem:
            wrong.append(f"{method} {path} ({endpoint}): {problem}")
    assert wrong == []
    assert checked >= 180
    assert events("permission.denied") == []
