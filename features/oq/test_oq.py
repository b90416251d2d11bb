"""Operational qualification: the scenarios of every feature file in this folder (one feature per function)."""

from pytest_bdd import scenarios

scenarios(".")
