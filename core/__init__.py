"""Shared kernel of Attest: database, audit trail, identity and access, organisation, clock.

`core` imports no domain package (signatures, training, lms, qms, validation) and knows none of their permissions,
event types, pages or tables; import-linter checks the first (pyproject.toml), tests/unit/test_packages.py the rest.
It offers the registries the packages fill in their `init_app` (docs/architecture.md): permissions and roles
(core.auth.permissions), audit event types (core.audit.register_events), navigation entries and page slots
(core.web), account actions (core.auth.admin) and demo data (core.demo).
"""

from __future__ import annotations


def load_models() -> None:
    """Import every module defining core's models (before core.db.configure_models builds the version classes)."""
    import core.audit  # noqa: F401
    import core.auth.models  # noqa: F401
    import core.auth.tokens  # noqa: F401
    import core.org  # noqa: F401


def init_app(app) -> None:
    """Extensions, request gates and core's own pages, commands, permissions, roles, events and demo accounts."""
    import logging

    from werkzeug.middleware.proxy_fix import ProxyFix

    from core import audit, cli, converters, demo, web
    from core import db as core_db
    from core.audit import views as audit_views
    from core.auth import admin, permissions, token_views, views
    from core.auth.access import login_manager
    from core.extensions import CONTENT_SECURITY_POLICY, bootstrap, csrf, limiter, talisman
    from core.org import views as org_views

    app.url_map.converters["int"] = converters.BoundedInt  # an id beyond any database integer is a 404
    if app.config["ATTEST_PROXY_FIX"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    core_db.init_app(app)
    login_manager.init_app(app)
    csrf.init_app(app)
    bootstrap.init_app(app)
    limiter.init_app(app)
    talisman.init_app(
        app,
        force_https=app.config["ATTEST_FORCE_HTTPS"],
        strict_transport_security=app.config["ATTEST_FORCE_HTTPS"],
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options="DENY",
        referrer_policy="same-origin",
    )

    permissions.register_core()
    audit.register_events(audit.SECURITY_EVENTS, position=10)
    audit.register_events(audit.ADMINISTRATION_EVENTS, position=90)

    for blueprint in (web.bp, views.bp, admin.bp, audit_views.bp, token_views.bp, org_views.bp):
        app.register_blueprint(blueprint)
    web.register_nav(app, "API tokens", "api_tokens.index", "dashboard.view", position=60)
    web.register_nav(app, "Organisation", "org.index", "org.view", position=110)
    for action in admin.CORE_ACTIONS:
        admin.register_account_action(app, action)
    web.register_error_handlers(app)
    cli.register(app)

    demo.register_people(
        app,
        logins=[demo.DemoLogin("admin", "Morgan Keller", frozenset({"system_admin"}), "ENG", "BSL", position=10),
                demo.DemoLogin("auditor", "Ian Inspector", frozenset({"auditor"}), "QA", "BSL", position=80)],
        roles=[demo.DemoRole("auditor", share=1, departments=("QA",), position=70)])

    if not app.config["SESSION_COOKIE_SECURE"]:
        logging.getLogger("attest").warning(
            "ATTEST_SESSION_COOKIE_SECURE is off: the session cookie is sent over plain HTTP (local demo only)")


def check_assembly(app) -> None:
    """After every package's init_app: the assembled matrix obeys its rules and every route and navigation entry
    names a registered permission (a mistake stops the application at start-up, not at the first request)."""
    from core.auth.access import check_routes
    from core.auth.permissions import check_matrix

    check_matrix()
    check_routes(app)
