"""Step definitions of the runner canaries: simple arithmetic, so that the only way a canary can pass is a runner
that misreports."""

from pytest_bdd import given, parsers, scenarios, then, when

scenarios(".")


@given(parsers.parse("the number {n:d}"), target_fixture="number")
def the_number(n, evidence):
    evidence.record("number", n)
    return n


@when("it is doubled", target_fixture="result")
def doubled(number):
    return number * 2


@when("the step raises an unexpected error", target_fixture="result")
def raises(number):
    raise RuntimeError("canary: unexpected error inside a step")


@then(parsers.parse("the result is {expected:d}"))
def result_is(result, expected, evidence):
    evidence.actual(f"the result is {result}")
    assert result == expected, f"expected {expected}, got {result}"
