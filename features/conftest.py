"""The validation protocols (IQ, OQ, PQ) as pytest-bdd features: fixtures and the steps every protocol shares.

The same files run in `make test` and in the in-app protocol runner. The runner sets ATTEST_VALIDATION_INSTALLED=1:
the `installed_app` fixture is then the installation itself (`create_app()` from its real ATTEST_* environment),
which IQ steps only read. Everything else runs on the scratch database of `testkit.plugin` (the `app` fixture).
"""

from __future__ import annotations

import os
import secrets
from types import SimpleNamespace
from typing import Any

import pytest
from pytest_bdd import given, parsers

pytest_plugins = [
    "testkit.plugin",
    "validation.bdd",
    "features.steps.installation",
    "features.steps.access",
    "features.steps.audit",
    "features.steps.signing",
    "features.steps.documents",
    "features.steps.training",
    "features.steps.quality",
    "features.steps.process",
    "features.steps.validation",
]

INSTALLED = "ATTEST_VALIDATION_INSTALLED"

# What the reference production installation sets in `make test` (the runner reads the real environment instead).
REFERENCE_PRODUCTION = {
    "SESSION_COOKIE_SECURE": True,
    "TOTP_REQUIRED": "signers",
    "DEFAULT_TIMEZONE": "UTC",
}


def installed_mode() -> bool:
    return os.environ.get(INSTALLED) == "1"


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Settings the OQ and PQ scratch application needs whatever the installation's environment says: the test
    client speaks plain HTTP from one address, and the protocols' data follow the default document numbering and
    training policies. Security parameters (lockout threshold, session limits) stay as configured; steps read them."""
    return {"FORCE_HTTPS": False, "PROXY_FIX": False, "RATELIMIT_STORAGE_URI": "memory://",
            "TOTP_REQUIRED": "signers", "DOCUMENT_NUMBER_PATTERN": r"^[A-Z]{2,5}-[A-Z]{2,5}-\d{3,4}$",
            "TRAINING_SUPERSEDED_POLICY": "supersede", "API_REFUSAL_RATE_LIMIT": "10000 per minute",
            "API_RATE_LIMIT": "10000 per minute"}


@pytest.fixture
def installed_app(request):
    """The installation under qualification, for read-only checks.

    With ATTEST_VALIDATION_INSTALLED=1: `create_app()` exactly as the servers build it from their environment.
    Otherwise: a reference production configuration (a long random secret key, secure cookies, TOTP for signers,
    UTC) on the freshly migrated test database."""
    from app import create_app
    from core.db import db

    if installed_mode():
        application = create_app()
    else:
        scratch = request.getfixturevalue("app")
        application = create_app({**REFERENCE_PRODUCTION, "SECRET_KEY": secrets.token_urlsafe(48),
                                  "DATABASE_URL": scratch.config["SQLALCHEMY_DATABASE_URI"]})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def ctx() -> SimpleNamespace:
    """What one scenario's steps hand each other (the people, records and responses of the scenario)."""
    return SimpleNamespace()


# --- shared steps -----------------------------------------------------------------------------------------------------


@given("the quality organisation with an author, two reviewers, two QA approvers and an operator")
def quality_organisation(app, make_user, ctx, evidence):
    """features.support.documents.setup_people: site MAIN, department QA, job function OP-MIX, and Ada
    Author, Sam Supervisor and Rita Reviewer (reviewers), Quinn QA and Quincy QA (approvers), Otto Operator."""
    from features.support.documents import setup_people

    ctx.p = setup_people(make_user)
    people = (ctx.p.author, ctx.p.reviewer, ctx.p.reviewer2, ctx.p.qa, ctx.p.qa2, ctx.p.operator)
    ctx.__dict__.setdefault("accounts", {}).update({user.username: user for user in people})
    evidence.record("People", "ada.author, sam.supervisor, rita.reviewer, quinn.qa, quincy.qa, otto.operator")
    evidence.record("Job function", "OP-MIX (Mixing operator)")


@given(parsers.parse('the operator holds the job function "OP-MIX"'))
def operator_holds_job_function(ctx, evidence):
    from features.support.documents import hold

    hold([ctx.p.operator], ctx.p.job_function_id)
    evidence.record("Job function holder", f"{ctx.p.operator.username} holds OP-MIX")


@given(parsers.parse('document "{number}" whose training audience is "OP-MIX"'))
def document_with_audience(ctx, evidence, number):
    from features.support.documents import new_document

    ctx.document = new_document(ctx.p, number=number)
    evidence.record("Document", f"{ctx.document.number} {ctx.document.title} (audience OP-MIX)")


@given(parsers.parse('revision {label} of the document is effective'))
def effective_revision_given(ctx, evidence, label):
    from features.support.documents import effective_revision

    revision = effective_revision(ctx.p, ctx.document)
    assert revision.label == label, f"expected revision {label}, the document's next revision is {revision.label}"
    ctx.revisions = {**getattr(ctx, "revisions", {}), label: revision}
    ctx.revision = revision
    evidence.record("Revision", f"{ctx.document.number} rev {revision.label}: {revision.status}")

