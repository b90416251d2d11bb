"""Performance qualification: the business process end to end at realistic volume."""

from pytest_bdd import scenarios

scenarios(".")
