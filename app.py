"""Attest application factory: config -> extensions and core -> each package's init_app, in dependency order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

import core
import lms
import qms
import signatures
import training
import validation
from core import config as config_module
from core import db as core_db

ROOT = Path(__file__).resolve().parent
# A source checkout (app.py beside pyproject.toml) keeps its instance folder in the checkout, as `make run` expects; an
# installed wheel keeps it in the current directory, never inside site-packages. ATTEST_INSTANCE_PATH overrides both.
CHECKOUT = (ROOT / "pyproject.toml").is_file()

# The dependency order of docs/architecture.md (checked by import-linter): each package registers after those it
# builds on, so its grants, slots and demo loaders find what they name.
PACKAGES = (core, signatures, training, lms, qms, validation)

# Each package's settings are read and validated with core's; every module defining models is imported, then the
# version classes are built once (STACK_NOTES: Continuum).
for _package in PACKAGES:
    config_module.register(*getattr(_package, "SETTINGS", ()))
    _package.load_models()
core_db.configure_models()


def create_app(config_overrides: dict[str, Any] | None = None) -> Flask:
    instance = config_module.instance_path(ROOT / "instance" if CHECKOUT else Path.cwd() / "instance",
                                           (config_overrides or {}).get("INSTANCE_PATH"))
    app = Flask(__name__, instance_path=instance, template_folder="core/templates", static_folder="core/static")
    app.config.update(config_module.load(app.instance_path, config_overrides))

    from core.extensions import migrate

    migrate.init_app(app, core_db.db, directory=str(ROOT / "migrations"), compare_type=True, render_as_batch=True)
    for package in PACKAGES:
        package.init_app(app)
    core.check_assembly(app)
    return app
