"""Training's fragments on core pages (core.web.register_slot): a person's job functions on the user page, the
qualification API on the API token pages. The job functions' section of the organisation page is
training.job_functions.views'."""

from __future__ import annotations

from flask import render_template


def account_details(user) -> str:
    return render_template("training/people/_account_details.html", user=user)


def token_about() -> str:
    return render_template("training/api/_token_about.html")


def token_example(secret: str) -> str:
    return render_template("training/api/_token_example.html", secret=secret)
