"""The JSON API answers as its own OpenAPI document says, checked by schemathesis from that document.

test_fuzz_api.py drives hypothesis itself for what the document cannot describe (tokens of every kind, the audit
accounting, the rate limits). Here schemathesis reads /api/v1/openapi.json from the app and generates requests for
every operation it describes, schema-valid and schema-violating, sent with a valid token of a supervisor (who may ask
about anyone) and of an operator (only about themself); each answer must pass schemathesis's checks: never a server
error, a status code, content type, headers and a body that the document declares for that operation, and a
schema-violating request refused.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from tests.web.test_fuzz_api import app_config, world  # noqa: F401 (fixtures: lifted rate limits, people, tokens)

EXAMPLES = 40
# A schema-valid request may still be refused for what a schema cannot say: `at` in the future (400), a username or
# document number that does not exist (404). Those refusals are checked for what the document declares (status,
# JSON error body) like every other answer; only "valid data must be accepted" is left out.
EXCLUDED = [positive_data_acceptance]


def operations(app):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, "the OpenAPI document describes no operation"
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("owner", ["supervisor", "operator"])
def test_every_operation_answers_as_the_openapi_document_declares(app, world, owner, mode):  # noqa: F811
    headers = {"Authorization": f"Bearer {world['secrets'][owner]}"}
    answered: set[int] = set()
    for operation in operations(app):

        @settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                         HealthCheck.filter_too_much])
        @given(case=operation.as_strategy(generation_mode=mode), known=st.booleans())
        def check(case, known):
            if known and mode == GenerationMode.POSITIVE:  # half of them about the trained operator and the document
                case.query = {**(case.query or {}), "user": world["usernames"][0], "document": world["numbers"][0]}
            response = case.call(headers=headers)
            case.validate_response(response, headers=headers, excluded_checks=EXCLUDED)
            answered.add(response.status_code)

        check()
    # the run reached both sides of the API, not only its refusals
    if mode == GenerationMode.POSITIVE:
        assert 200 in answered, answered
    assert answered - {200}, answered
