"""Attest application factory: config -> extensions -> blueprints -> CLI groups."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask

from core import config as config_module
from core import converters as web_converters
from core import db as core_db

ROOT = Path(__file__).resolve().parent
# A source checkout (app.py beside pyproject.toml) keeps its instance folder in the checkout, as `make run` expects; an
# installed wheel keeps it in the current directory, never inside site-packages. ATTEST_INSTANCE_PATH overrides both.
CHECKOUT = (ROOT / "pyproject.toml").is_file()

# Every module defining models is imported here, then the version classes are built once (STACK_NOTES: Continuum).
import core.audit  # noqa: E402,F401
import core.auth.models  # noqa: E402,F401
import core.auth.tokens  # noqa: E402,F401
import core.org  # noqa: E402,F401
import qms.capa.models  # noqa: E402,F401
import qms.change_control.models  # noqa: E402,F401
import qms.deviations.models  # noqa: E402,F401
import qms.documents.models  # noqa: E402,F401
import qms.numbering  # noqa: E402,F401
import signatures.models  # noqa: E402,F401
import training.models  # noqa: E402,F401
import validation.models  # noqa: E402,F401

core_db.configure_models()


def create_app(config_overrides: dict[str, Any] | None = None) -> Flask:
    instance = config_module.instance_path(ROOT / "instance" if CHECKOUT else Path.cwd() / "instance",
                                           (config_overrides or {}).get("INSTANCE_PATH"))
    app = Flask(__name__, instance_path=instance, template_folder="core/templates", static_folder="core/static")
    app.config.update(config_module.load(app.instance_path, config_overrides))
    app.url_map.converters["int"] = web_converters.BoundedInt  # an id beyond any database integer is a 404

    from werkzeug.middleware.proxy_fix import ProxyFix

    if app.config["ATTEST_PROXY_FIX"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    from core.auth.access import login_manager
    from core.extensions import CONTENT_SECURITY_POLICY, bootstrap, csrf, limiter, migrate, talisman

    core_db.init_app(app)
    migrate.init_app(app, core_db.db, directory=str(ROOT / "migrations"), compare_type=True, render_as_batch=True)
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

    from core import cli, web
    from core.audit import views as audit_views
    from core.auth import admin, views
    from qms import cli as qms_cli
    from qms.documents import views as document_views
    from signatures import ceremony as signature_ceremony
    from signatures import cli as signatures_cli

    app.register_blueprint(web.bp)
    app.register_blueprint(signature_ceremony.bp)  # the signing page's templates (no routes)
    app.register_blueprint(views.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(audit_views.bp)
    app.register_blueprint(document_views.bp)
    web.register_nav(app, "Documents", "documents.register", "documents.view")
    from training.read_and_sign import views as read_and_sign

    app.register_blueprint(read_and_sign.bp)
    web.register_nav(app, "My training", "read_and_sign.index", "training.view_own")
    from core.auth import token_views
    from training import api
    from training.hr_import import views as import_views
    from training.matrix import views as matrix_views
    from training.qualification import views as qualification_views

    app.register_blueprint(matrix_views.bp)
    web.register_nav(app, "Training matrix", "training_matrix.matrix", "training.manage")
    app.register_blueprint(qualification_views.bp)
    web.register_nav(app, "Team training", "qualification.team", "training.view_team")
    app.register_blueprint(import_views.bp)
    web.register_nav(app, "HR import", "training_import.index", "training.manage")
    app.register_blueprint(token_views.bp)
    web.register_nav(app, "API tokens", "api_tokens.index", "dashboard.view")
    app.register_blueprint(api.bp)
    from qms.capa import views as capa_views
    from qms.change_control import views as change_views
    from qms.deviations import views as deviation_views

    app.register_blueprint(change_views.bp)
    web.register_nav(app, "Change control", "change_control.register", "quality.view")
    app.register_blueprint(deviation_views.bp)
    web.register_nav(app, "Deviations", "deviations.register", "quality.view")
    app.register_blueprint(capa_views.bp)
    web.register_nav(app, "CAPA", "capa.register", "quality.view")
    from validation import views as validation_views

    app.register_blueprint(validation_views.bp)
    web.register_nav(app, "Validation", "validation.overview", "audit.view")  # engineers, QA and auditors hold it
    from core.org import views as org_views
    from training.people import views as people_views

    app.register_blueprint(org_views.bp)
    web.register_nav(app, "Organisation", "org.index", "org.view")
    app.register_blueprint(people_views.bp)
    web.register_nav(app, "People & job functions", "people.index", "training.manage")
    web.register_error_handlers(app)

    cli.register(app)
    app.cli.add_command(qms_cli.qms_cli)
    from core import demo
    from qms.documents import demo as document_demo
    from training import demo as training_demo

    demo.register_loader(training_demo.load)  # people hold job functions before documents are approved
    demo.register_loader(document_demo.load)
    from training.matrix import demo as matrix_demo

    demo.register_loader(matrix_demo.load)  # the matrix, completions and overdue training, after the documents
    from qms import quality_demo

    demo.register_loader(quality_demo.load)  # change controls, deviations and CAPAs, on the trained organisation
    from validation import demo as validation_demo

    demo.register_loader(validation_demo.load)  # protocols approved, ready to execute
    from core.auth import services as auth_services
    from training.people import services as training_services

    auth_services.register_deactivation_hook(training_services.on_user_deactivated)
    auth_services.register_reactivation_hook(training_services.on_user_reactivated)
    from core.auth import tokens

    auth_services.register_deactivation_hook(tokens.on_user_deactivated)
    from training import cli as training_cli

    app.cli.add_command(training_cli.training_cli)
    from validation import cli as validation_cli

    app.cli.add_command(validation_cli.validation_cli)
    app.cli.add_command(signatures_cli.signatures_cli)

    if not app.config["SESSION_COOKIE_SECURE"]:
        logging.getLogger("attest").warning(
            "ATTEST_SESSION_COOKIE_SECURE is off: the session cookie is sent over plain HTTP (local demo only)")
    return app
