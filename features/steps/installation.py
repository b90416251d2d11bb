"""IQ steps: installed packages, database schema and guards, shipped schemas, production configuration, audit chain.

They only read: with ATTEST_VALIDATION_INSTALLED=1 the `installed_app` is the installation itself."""

from __future__ import annotations

import hashlib
import importlib
import tomllib
from datetime import UTC, timedelta
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pytest_bdd import given, then, when

from features.support.inspection import SHIPPED_PACKAGES, short

ROOT = Path(__file__).resolve().parents[2]


def _key(requirement: Requirement) -> tuple:
    return (canonicalize_name(requirement.name), frozenset(requirement.extras), str(requirement.specifier))


def _runtime(requirements: list[str]) -> list[Requirement]:
    """Requirements that apply to this interpreter without extras (the dev tools are not part of the release)."""
    out = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            out.append(requirement)
    return out


@given("the released dependency declaration of Attest")
def dependency_declaration(ctx, evidence):
    pyproject = ROOT / "pyproject.toml"
    installed = _runtime(metadata.requires("attest") or [])
    if pyproject.exists():
        declared = _runtime(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
        digest = hashlib.sha256(pyproject.read_bytes()).hexdigest()
        evidence.record("Declaration", f"{pyproject} (SHA-256 {short(digest)})")
    else:  # an installation without the source tree: the distribution's metadata is the declaration
        declared = installed
        evidence.record("Declaration", "metadata of the installed attest distribution")
    ctx.declared, ctx.installed_declaration = declared, installed
    evidence.record("Attest version", metadata.version("attest"))
    evidence.record("Declared packages", len(declared))


@when("the installed version of each declared package is read")
def read_installed_versions(ctx, evidence):
    ctx.versions = {}
    for requirement in ctx.declared:
        try:
            ctx.versions[requirement.name] = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            ctx.versions[requirement.name] = None
    for requirement in ctx.declared:
        evidence.record(requirement.name, f"{ctx.versions[requirement.name]} (declared {requirement.specifier})")


@then("every declared package is installed in a version within its declared range")
def versions_in_range(ctx, evidence):
    wrong = [f"{r.name} {ctx.versions[r.name]} not in {r.specifier}" for r in ctx.declared
             if ctx.versions[r.name] is None or not r.specifier.contains(ctx.versions[r.name], prereleases=True)]
    evidence.actual(f"{len(ctx.declared) - len(wrong)} of {len(ctx.declared)} declared packages installed within "
                    f"range" + (f"; outside: {', '.join(wrong)}" if wrong else ""))
    assert wrong == []


@then("the installed distribution declares the same requirements as the release")
def distribution_matches(ctx, evidence):
    declared = {_key(r) for r in ctx.declared}
    installed = {_key(r) for r in ctx.installed_declaration}
    missing, extra = sorted(declared - installed), sorted(installed - declared)
    evidence.actual(f"installed metadata lists {len(installed)} requirements; missing from it: {missing or 'none'}; "
                    f"not in the release: {extra or 'none'}")
    assert not missing and not extra


@given("the installed application and its database")
def installed_database(installed_app, ctx, evidence):
    from core.config import _redact_url

    ctx.app = installed_app
    evidence.record("Database", _redact_url(installed_app.config["SQLALCHEMY_DATABASE_URI"]))


@when("the migration history is compared with the database's migration stamp")
def compare_migrations(ctx, evidence):
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from core.db import db

    with ctx.app.app_context():
        script = ScriptDirectory.from_config(ctx.app.extensions["migrate"].migrate.get_config())
        ctx.heads = tuple(script.get_heads())
        with db.engine.connect() as conn:
            ctx.current = tuple(MigrationContext.configure(conn).get_current_heads())
            ctx.dialect = conn.dialect.name
            if ctx.dialect == "postgresql":
                ctx.triggers = set(conn.exec_driver_sql(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").scalars())
            else:
                ctx.triggers = set(conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
    evidence.record("Migration heads", ", ".join(ctx.heads))
    evidence.record("Database at", ", ".join(ctx.current) or "(no migration stamp)")


@then("the migration history has a single head and the database is at that head")
def at_single_head(ctx, evidence):
    evidence.actual(f"{len(ctx.heads)} head(s) {', '.join(ctx.heads)}; database stamped {', '.join(ctx.current)}")
    assert len(ctx.heads) == 1 and ctx.current == ctx.heads


@then("every version table and the audit event table carry their append-only guards")
def guards_installed(ctx, evidence):
    from sqlalchemy_continuum import version_class

    from core.db import versioned_classes

    tables = [version_class(cls).__table__.name for cls in versioned_classes()] + ["audit_event"]
    missing = []
    for table in tables:
        expected = {f"{table}_append_only"} if ctx.dialect == "postgresql" else {f"{table}_no_update",
                                                                                 f"{table}_no_delete"}
        if not expected <= ctx.triggers:
            missing.append(table)
    core = {"audit_transaction_no_delete", "audit_transaction_sealed", "audit_chain_head_no_delete",
            "audit_chain_head_advance"}
    missing += sorted(core - ctx.triggers)
    evidence.actual(f"{len(tables)} audit tables checked on {ctx.dialect}; unguarded: {missing or 'none'}")
    assert missing == []


@given("the XML schemas shipped with the software")
def shipped_schemas(ctx, evidence):
    ctx.schemas = []
    for package in SHIPPED_PACKAGES:
        folder = Path(importlib.import_module(package).__file__).parent
        ctx.schemas.extend(sorted(folder.rglob("*.xsd")))
    evidence.record("Schemas", ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                                          for p in ctx.schemas))
    assert any(p.name == "manifest.xsd" for p in ctx.schemas), "signatures/manifest.xsd is not installed"


@when("each schema is loaded as an XSD with external access refused")
def load_schemas(ctx, evidence):
    import xmlschema

    ctx.loaded, ctx.schema_errors = {}, {}
    for path in ctx.schemas:
        try:
            ctx.loaded[path] = xmlschema.XMLSchema(path.read_text(encoding="utf-8"), allow="none", defuse="always")
        except xmlschema.XMLSchemaException as exc:
            ctx.schema_errors[path] = str(exc).splitlines()[0]


@then("each schema is a valid XSD document and its SHA-256 is recorded")
def schemas_valid(ctx, evidence):
    for path in ctx.schemas:
        evidence.record(path.name, f"SHA-256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    evidence.actual(f"{len(ctx.loaded)} of {len(ctx.schemas)} schemas valid"
                    + (f"; invalid: {ctx.schema_errors}" if ctx.schema_errors else ""))
    assert ctx.schema_errors == {} and len(ctx.loaded) == len(ctx.schemas)


@then("the signature manifest schema lists exactly the signature meanings of the software")
def manifest_meanings(ctx, evidence):
    from signatures.models import MEANINGS

    schema = next(s for p, s in ctx.loaded.items() if p.name == "manifest.xsd")
    listed = tuple(schema.types["Meaning"].enumeration or ())
    evidence.actual(f"manifest.xsd lists {len(listed)} meanings: {', '.join(listed)}")
    assert listed == MEANINGS


@given("the installed application's configuration")
def installed_configuration(installed_app, ctx, evidence):
    from core import config

    ctx.config = installed_app.config
    for variable, value, _help in config.describe(installed_app.config):
        evidence.record(variable, value)


@then("the session cookie is secure, HTTP-only and same-site")
def cookie_flags(ctx, evidence):
    flags = (ctx.config["SESSION_COOKIE_SECURE"], ctx.config["SESSION_COOKIE_HTTPONLY"],
             ctx.config["SESSION_COOKIE_SAMESITE"])
    evidence.actual(f"Secure={flags[0]}, HttpOnly={flags[1]}, SameSite={flags[2]}")
    assert flags[0] is True and flags[1] is True and flags[2] in ("Lax", "Strict")


@then("the secret key is at least 32 characters long and is not a key published in the source code")
def secret_key_safe(ctx, evidence):
    from testkit.plugin import _test_config

    key = ctx.config["SECRET_KEY"]
    published = {_test_config("sqlite://")["SECRET_KEY"], "bench-secret-key-that-is-long-enough-0123456789"}
    fingerprint = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    evidence.actual(f"secret key of {len(key)} characters (fingerprint {fingerprint}), "
                    f"{'a published key' if key in published else 'not a published key'}, "
                    f"{len(set(key))} distinct characters")
    assert len(key) >= 32 and key not in published and len(set(key)) >= 10


@then("TOTP is required for every signer")
def totp_for_signers(ctx, evidence):
    evidence.actual(f"ATTEST_TOTP_REQUIRED={ctx.config['ATTEST_TOTP_REQUIRED']}")
    assert ctx.config["ATTEST_TOTP_REQUIRED"] in ("signers", "all")


@then("the default time zone is UTC and the server clock runs in UTC")
def utc_clock(ctx, evidence):
    from core.clock import now_utc

    now = now_utc()
    evidence.actual(f"ATTEST_DEFAULT_TIMEZONE={ctx.config['ATTEST_DEFAULT_TIMEZONE']}; now_utc() = {now.isoformat()} "
                    f"(offset {now.utcoffset()})")
    assert ctx.config["ATTEST_DEFAULT_TIMEZONE"] in ("UTC", "Etc/UTC")
    assert now.tzinfo is UTC and now.utcoffset() == timedelta(0)


@then("no setting can switch the audit trail or versioning off")
def audit_always_on(ctx, evidence):
    from sqlalchemy_continuum import versioning_manager

    from core.config import SETTINGS
    from core.db import versioned_classes

    switches = [s.name for s in SETTINGS if any(w in s.name.lower() for w in ("audit", "version", "trail"))]
    evidence.actual(f"{len(SETTINGS)} settings, none about auditing: {switches or 'none found'}; "
                    f"{len(versioned_classes())} record types versioned; versioning options "
                    f"{versioning_manager.options.get('versioning', True)}")
    assert switches == [] and len(versioned_classes()) > 10
    assert versioning_manager.options.get("versioning", True) is True


@then("an invalid setting stops the application from starting, naming the variable")
def invalid_setting_refused(tmp_path, evidence):
    from core import config

    with pytest.raises(config.ConfigError) as refused:
        config.load(str(tmp_path), {"LOCKOUT_THRESHOLD": 0})
    evidence.actual(f"ATTEST_LOCKOUT_THRESHOLD=0 refused: {refused.value}")
    assert "ATTEST_LOCKOUT_THRESHOLD" in str(refused.value)


@when("the audit trail integrity check runs")
def run_verify(ctx, evidence):
    from core import audit

    with ctx.app.app_context():
        ctx.verified = audit.verify()
    evidence.record("Checked", f"{ctx.verified.transactions} transactions, {ctx.verified.version_rows} version "
                               f"rows, {ctx.verified.records} records")


@then("the hash chain is intact and every record matches its last audited version")
def chain_intact(ctx, evidence):
    result = ctx.verified
    evidence.actual("audit trail intact" if result.ok else
                    f"FAILED: {result.chain_error or ''} {'; '.join(result.record_problems)}")
    assert result.ok

