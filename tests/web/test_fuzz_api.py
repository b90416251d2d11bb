"""Hostile requests to the JSON API, made from its own OpenAPI document: every operation the app describes at
/api/v1/openapi.json, with hypothesis-made query strings (each documented parameter present, missing, repeated or
hostile, extra parameters, tokens in the address, raw undecodable bytes), Authorization headers (valid, revoked,
expired, deactivated owner's, forged, malformed) and other methods and paths under /api/v1.

Every answer is JSON with a status the document lists, an `error` and a `message`, and is never cached; a refusal
of a missing or bad token is a 401 with its challenge. Nothing is written but one audit event per request: "API
request" for a valid token, "API request refused" without one (none for a token sent in the address, which is
refused before any token is read).

Schemathesis checks, from the same document, that every answer has the status, headers and body the document
declares (test_openapi_conformance.py); what matters here (headers, tokens of every kind, the audit accounting and
the rate limits) is beyond what a schema describes, so the document drives hypothesis directly.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import clock
from core.auth import services as auth_services
from core.auth import tokens
from core.db import transaction
from core.extensions import limiter
from features.support.documents import effective_revision, hold, new_document, setup_people, train
from tests.web.fuzz_helpers import audit_events_after, hostile_text, last_audit_event_id, snapshot
from training.api import URL_TOKEN_PARAMETERS

EXAMPLES = 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
API_EVENTS = frozenset({"api.request", "api.refused"})  # counted one by one instead
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)


@pytest.fixture
def app_config():
    # the fuzz sends hundreds of requests from one address: lift the limits (tested below at their design)
    return {"ATTEST_API_REFUSAL_RATE_LIMIT": "100000 per minute", "ATTEST_API_RATE_LIMIT": "100000 per minute"}


def _token(owner, **kwargs) -> str:
    with transaction():
        _token, secret = tokens.create(owner, name=kwargs.pop("name", "Fuzz token"), **kwargs)
    return secret


@pytest.fixture
def world(app, make_user):
    """People, a document in force and an operator trained on it; a token of each kind: valid ones (a supervisor
    who may ask about anyone, an operator only about themself), revoked, expired, and one whose owner left."""
    p = setup_people(make_user)
    hold([p.operator], p.job_function_id)
    document = new_document(p)
    revision = effective_revision(p, document)
    clock.freeze(clock.now_utc() + timedelta(hours=1))
    train(p.operator, revision)
    clock.freeze(clock.now_utc() + timedelta(hours=1))
    leaver = make_user("lea.leaver", roles={"supervisor"}, full_name="Lea Leaver")
    secrets = {"supervisor": _token(p.reviewer), "operator": _token(p.operator),
               "revoked": _token(p.qa), "expired": _token(p.qa2, expires_on=clock.now_utc().date() + timedelta(days=1)),
               "owner_left": _token(leaver)}
    with transaction(reason="Fuzz: a revoked token"):
        token = tokens.resolve(secrets["revoked"])
        tokens.revoke(token, actor=p.qa)
    with transaction(reason="Fuzz: the owner left"):
        auth_services.deactivate_account(leaver, actor=None)
    clock.freeze(clock.now_utc() + timedelta(days=2))  # past the expiry date
    return {"secrets": secrets, "usernames": [u.username for u in (p.operator, p.reviewer, p.qa, leaver)],
            "numbers": [document.number, document.number.lower()]}


def authorization(secrets: dict[str, str]) -> st.SearchStrategy[str | None]:
    valid = st.sampled_from(sorted(secrets.values()))  # tokens of every kind, the refused ones included
    bearer = st.sampled_from([secrets["supervisor"], secrets["operator"]]).map(lambda s: f"Bearer {s}")
    return st.one_of(
        bearer, bearer, bearer, bearer,  # most requests get past the token, to reach the parameters
        valid.map(lambda s: f"Bearer {s}"), st.none(), valid.map(lambda s: f"bearer   {s}  "),
        valid.map(lambda s: f"Basic {s}"), valid, valid.map(lambda s: f"Bearer {s[:-1]}"),
        valid.map(lambda s: f"Bearer {s}{s}"),
        st.sampled_from(["Bearer", "Bearer ", "Bearer  ", "Bearer null", "Bearer att_"]),
        HEADER_TEXT.map(lambda s: f"Bearer {s}"), HEADER_TEXT.map(lambda s: f"Bearer {tokens.PREFIX}{s}"),
        st.integers(0, 300).map(lambda n: f"Bearer {tokens.PREFIX}{'A' * n}"), HEADER_TEXT)


def query(operation: dict, world: dict) -> st.SearchStrategy[list[tuple[str, str]]]:
    """The operation's documented parameters (each missing, a plausible value, a hostile one, or repeated) and
    extra ones, tokens in the address among them."""
    plausible = {"user": world["usernames"], "document": world["numbers"],
                 "at": ["2025-03-03T10:00:00Z", "2025-03-03T12:00:00+02:00", "2099-01-01T00:00:00Z"]}
    per_parameter = []
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        value = st.one_of(st.sampled_from(plausible.get(name, []) + [parameter.get("example", "")]),
                          st.sampled_from(plausible.get(name, []) + [parameter.get("example", "")]),
                          hostile_text(*world["usernames"], *world["numbers"]))
        per_parameter.append(st.one_of(value.map(lambda v, n=name: [(n, v)]), st.just([]),
                                       st.lists(value, min_size=2, max_size=3).map(
                                           lambda vs, n=name: [(n, v) for v in vs])))
    name = st.one_of(st.text(min_size=1, max_size=10), st.sampled_from(list(URL_TOKEN_PARAMETERS)))
    extra = st.one_of(st.just([]), st.just([]), st.lists(st.tuples(name, hostile_text()), min_size=1, max_size=2))
    return st.tuples(st.tuples(*per_parameter), extra).map(
        lambda parts: [pair for group in parts[0] for pair in group] + parts[1])


def check_answer(response, operation: dict | None, spec: dict, before: dict, last_event: int,
                 token_was_read: bool) -> None:
    status = response.status_code
    assert status < 500, (status, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/json", (status, response.mimetype)
    assert response.headers.get("Cache-Control") == "no-store"
    body = response.get_json()
    documented = set(operation["responses"]) if operation else {"404", "405"}
    assert str(status) in documented, (status, body)
    if status == 200:
        schema = spec["components"]["schemas"]["Qualification"]["properties"]
        assert set(body) == set(schema), body
        assert isinstance(body["qualified"], bool) and isinstance(body["user_active"], bool)
    else:
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("message"), str) and body["message"].strip(), body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="Attest"')
        assert body["error"] in ("missing_token", "invalid_token")
    after = snapshot(API_EVENTS)
    assert after == before, f"an API request wrote {[(t, before[t], n) for t, n in after.items() if before[t] != n]}"
    if not token_was_read:
        expected = []
    else:
        expected = ["api.refused"] if status == 401 else ["api.request"]
    assert audit_events_after(last_event) == expected, (status, body)


def test_the_openapi_operations_answer_hostile_requests_cleanly(app, client, world):
    spec = client.get("/api/v1/openapi.json").get_json()
    base = spec["servers"][0]["url"].split("://", 1)[1].split("/", 1)[1]
    operations = [(f"/{base}{path}", method.upper(), operation)
                  for path, item in spec["paths"].items() for method, operation in item.items()]
    assert operations, "the OpenAPI document describes no operation"
    strategies = st.one_of(*[st.tuples(st.just(path), st.just(method), st.just(operation), query(operation, world))
                             for path, method, operation in operations])

    @settings(SETTINGS, max_examples=4 * EXAMPLES)
    @given(target=strategies, auth=authorization(world["secrets"]), raw=st.none() | st.binary(max_size=40),
           accept=st.none() | HEADER_TEXT)
    def request(target, auth, raw, accept):
        path, method, operation, params = target
        headers = {k: v for k, v in (("Authorization", auth), ("Accept", accept)) if v is not None}
        # raw: bytes as sent on the wire, undecodable UTF-8 and stray '%' included (WSGI carries them as latin-1)
        query_string = urlencode(params) + ("&" + raw.decode("latin-1") if raw is not None else "")
        before, last_event = snapshot(API_EVENTS), last_audit_event_id()
        response = client.open(path, method=method, query_string=query_string, headers=headers)
        in_url = any(name in URL_TOKEN_PARAMETERS for name, _ in params) or \
            (response.status_code == 400 and response.get_json().get("error") == "token_in_url")
        check_answer(response, operation, spec, before, last_event, token_was_read=not in_url)

    request()


@SETTINGS
@given(method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
       path=st.sampled_from(["/api/v1/qualification", "/api/v1/openapi.json"]) |
       st.text(min_size=1, max_size=30).map(lambda s: "/api/v1/" + s.replace("?", "").replace("#", "")),
       body=st.none() | st.binary(max_size=200) | hostile_text())
def test_other_methods_and_unknown_api_paths_get_json_refusals(app, client, world, method, path, body):
    before, last_event = snapshot(API_EVENTS), last_audit_event_id()
    headers = {"Authorization": f"Bearer {world['secrets']['supervisor']}", "Content-Type": "application/json"}
    response = client.open(path, method=method, data=body, headers=headers)
    check_answer(response, None, {}, before, last_event, token_was_read=False)


class TestRefusalRateLimit:
    @pytest.fixture
    def app_config(self):
        return {"ATTEST_API_REFUSAL_RATE_LIMIT": "3 per minute", "ATTEST_API_RATE_LIMIT": "100000 per minute"}

    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(forged=st.lists(st.one_of(HEADER_TEXT.map(lambda s: f"Bearer {tokens.PREFIX}{s}"), HEADER_TEXT,
                                     st.none()), min_size=4, max_size=8))
    def test_bad_tokens_stay_401_until_the_limit_then_429_for_everyone_from_the_address(self, app, client, world,
                                                                                          forged):
        limiter.reset()
        last_event = last_audit_event_id()
        answers = [client.get("/api/v1/qualification", query_string={"user": "otto.operator", "document": "X"},
                              headers={"Authorization": h} if h is not None else {}) for h in forged]
        assert [a.status_code for a in answers] == [401] * 3 + [429] * (len(forged) - 3)
        assert all(a.get_json()["error"] == "rate_limited" and a.headers["Retry-After"] == "60"
                   for a in answers[3:])
        assert audit_events_after(last_event) == ["api.refused"] * 3
        valid = client.get("/api/v1/qualification", query_string={"user": "otto.operator", "document": "X"},
                           headers={"Authorization": f"Bearer {world['secrets']['supervisor']}"})
        assert valid.status_code == 429  # the address is refused whatever it sends until the minute has passed


@pytest.mark.parametrize("parameter", ["user", "document"])
def test_a_nul_in_a_parameter_is_an_invalid_parameter_and_audited(app, client, world, parameter):
    """PostgreSQL cannot compare text holding NUL: the lookup failed there with a 500 and no audit event."""
    before, last_event = snapshot(API_EVENTS), last_audit_event_id()
    params = {"user": "otto.operator", "document": "SOP-QA-001", parameter: "otto\x00"}
    response = client.get("/api/v1/qualification", query_string=params,
                          headers={"Authorization": f"Bearer {world['secrets']['supervisor']}"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_parameter", "parameter": parameter,
                                   "message": f"Parameter '{parameter}' must not contain a NUL character (%00)."}
    assert snapshot(API_EVENTS) == before
    assert audit_events_after(last_event) == ["api.request"]


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_moment_off_the_calendar_in_utc_is_an_invalid_parameter(app, client, world, at):
    """Converting such an 'at' to UTC raised OverflowError: a 500 with no audit event."""
    last_event = last_audit_event_id()
    response = client.get("/api/v1/qualification", query_string={"user": "otto.operator", "document": "SOP-QA-001",
                                                                  "at": at},
                          headers={"Authorization": f"Bearer {world['secrets']['supervisor']}"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_parameter", "parameter": "at",
                                   "message": f"Parameter 'at' lies outside the years 1 to 9999 in UTC; got {at!r}."}
    assert audit_events_after(last_event) == ["api.request"]
