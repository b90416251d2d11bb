"""Configuration: typed defaults in one place, overridden by ATTEST_* environment variables, validated at start-up.

There is deliberately no setting that turns the audit trail or versioning off.
"""

from __future__ import annotations

import os
import re
import secrets
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable and the rule."""


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"ATTEST_{name} must be true or false (1/0, yes/no), got {raw!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None
    secret: bool = False

    def parse(self, raw: str) -> Any:
        if self.type is bool:
            return _parse_bool(self.name, raw)
        if self.type is int:
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"ATTEST_{self.name} must be a whole number, got {raw!r}") from None
            return value
        return raw

    def validate(self, value: Any) -> None:
        label = f"ATTEST_{self.name}"
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{label} must be a whole number, got {value!r}")
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(f"{label} must be at least {self.minimum}, got {value}")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"{label} must be at most {self.maximum}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{label} must be one of {', '.join(self.choices)}, got {value!r}")


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", str, None, "SQLAlchemy URL; default sqlite:///<instance>/attest.db"),
    Setting("SECRET_KEY", str, None, "Session signing key; generated into the instance folder when unset", secret=True),
    Setting("SESSION_IDLE_MINUTES", int, 15, "Idle timeout of a login session, minutes", 1, 480),
    Setting("SESSION_MAX_HOURS", int, 12, "Absolute lifetime of a login session, hours", 1, 72),
    Setting("LOCKOUT_THRESHOLD", int, 5, "Consecutive failed password/TOTP attempts that lock an account", 1, 20),
    Setting("PASSWORD_MIN_LENGTH", int, 12, "Minimum password length", 12, 128),
    Setting("PASSWORD_HISTORY", int, 5, "A new password may not equal any of the last N", 1, 24),
    Setting("TOTP_REQUIRED", str, "signers", "Who must use a TOTP second factor: all, signers or none",
            choices=("all", "signers", "none")),
    Setting("TOTP_ISSUER", str, "Attest", "Issuer name shown in authenticator apps"),
    Setting("LOGIN_RATE_LIMIT", str, "20 per minute", "Login attempts allowed per client address"),
    Setting("API_RATE_LIMIT", str, "600 per minute", "JSON API requests allowed per client address"),
    Setting("API_REFUSAL_RATE_LIMIT", str, "20 per minute",
            "JSON API requests without a valid token allowed per client address (each is audited)"),
    Setting("RATELIMIT_STORAGE_URI", str, "memory://", "Rate-limit store (memory:// or redis://...)"),
    Setting("SESSION_COOKIE_SECURE", bool, True, "Send the session cookie over HTTPS only"),
    Setting("FORCE_HTTPS", bool, False, "Redirect HTTP to HTTPS and send HSTS (behind TLS termination)"),
    Setting("PROXY_FIX", bool, False, "Trust one proxy's X-Forwarded-For/Proto headers (behind a load balancer)"),
    Setting("DEFAULT_TIMEZONE", str, "UTC", "Time zone for users who have not chosen one (IANA name)"),
    Setting("DOCUMENT_NUMBER_PATTERN", str, r"^[A-Z]{2,5}-[A-Z]{2,5}-\d{3,4}$",
            "Regular expression a controlled document number must match (e.g. SOP-QA-001)"),
    Setting("TRAINING_SUPERSEDED_POLICY", str, "supersede",
            "Open training on a revision that is superseded: supersede (closed, replaced by the new revision's) "
            "or keep", choices=("supersede", "keep")),
    Setting("MAX_UPLOAD_MB", int, 20, "Largest PDF accepted as document content, megabytes", 1, 200),
    Setting("INSTANCE_PATH", str, None,
            "Folder of this installation's own files (generated secret key, default SQLite database, validation run "
            "logs); default <checkout>/instance in a source checkout, ./instance when installed from a wheel"),
    Setting("VALIDATION_DATABASE_URL", str, "",
            "PostgreSQL server URL where validation runs create (and drop) their scratch database; empty: a "
            "scratch SQLite file. Never the production database", secret=True),
)

BY_NAME = {s.name: s for s in SETTINGS}


def instance_path(default: Path, override: str | None = None) -> str:
    """The instance folder: `override` (a create_app override), else ATTEST_INSTANCE_PATH, else `default`; a relative
    value is taken from the current directory. Refused when it is a file, or inside the folder of the installed
    packages (site-packages), which an upgrade of Attest replaces."""
    raw = override if override not in (None, "") else os.environ.get("ATTEST_INSTANCE_PATH")
    if raw not in (None, "") and not str(raw).strip():
        raise ConfigError(f"ATTEST_INSTANCE_PATH must name a folder, got {raw!r}")
    folder = Path(os.path.abspath(Path(str(raw)).expanduser() if raw not in (None, "") else default))
    if folder.is_file():
        raise ConfigError(f"ATTEST_INSTANCE_PATH must name a folder, but {folder} is a file")
    for key in ("purelib", "platlib"):
        packages = Path(sysconfig.get_paths()[key]).resolve()
        if folder.resolve().is_relative_to(packages):
            raise ConfigError(f"The instance folder {folder} is inside the installed packages ({packages}), which an "
                              f"upgrade replaces: set ATTEST_INSTANCE_PATH to a folder outside it (or start Attest "
                              f"from another directory)")
    return str(folder)


def load(instance_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the Flask config mapping built from defaults, ATTEST_* variables and overrides (in that order)."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = os.environ.get(f"ATTEST_{setting.name}")
        values[setting.name] = setting.parse(raw) if raw not in (None, "") else setting.default
    extra: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key in BY_NAME:
            values[key] = value
        else:
            extra[key] = value
    for setting in SETTINGS:
        if values[setting.name] is not None:
            setting.validate(values[setting.name])
    try:
        ZoneInfo(values["DEFAULT_TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"ATTEST_DEFAULT_TIMEZONE must be an IANA time zone name, got {values['DEFAULT_TIMEZONE']!r}"
        ) from None
    try:
        re.compile(values["DOCUMENT_NUMBER_PATTERN"])
    except (re.error, TypeError) as exc:
        raise ConfigError(
            f"ATTEST_DOCUMENT_NUMBER_PATTERN must be a valid regular expression, got "
            f"{values['DOCUMENT_NUMBER_PATTERN']!r} ({exc})"
        ) from None

    values["INSTANCE_PATH"] = str(instance_path)  # the folder in use (app.py resolves it with instance_path())
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'attest.db'}"
    if not values["SECRET_KEY"]:
        values["SECRET_KEY"] = _instance_secret(Path(instance_path))
    elif len(values["SECRET_KEY"]) < 32:
        raise ConfigError("ATTEST_SECRET_KEY must be at least 32 characters long")

    config: dict[str, Any] = {f"ATTEST_{k}": v for k, v in values.items()}
    config.update(
        SECRET_KEY=values["SECRET_KEY"],
        SQLALCHEMY_DATABASE_URI=values["DATABASE_URL"],
        SESSION_COOKIE_SECURE=values["SESSION_COOKIE_SECURE"],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="attest_session",
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the login session, which has its own limits
        BOOTSTRAP_SERVE_LOCAL=True,
        RATELIMIT_STORAGE_URI=values["RATELIMIT_STORAGE_URI"],
        RATELIMIT_HEADERS_ENABLED=False,
        # a request must fit the largest allowed upload plus its form fields
        MAX_CONTENT_LENGTH=max(50, values["MAX_UPLOAD_MB"] + 10) * 1024 * 1024,
    )
    config.update(extra)
    return config


def _instance_secret(instance: Path) -> str:
    """Read the generated secret key of this installation, creating it (mode 0600) on first run."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        tmp = instance / f".secret_key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: when two servers start at once, the first key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def describe(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, effective value, help) for the configuration page; secrets are never shown."""
    rows = []
    for setting in SETTINGS:
        value = config.get(f"ATTEST_{setting.name}")
        if setting.secret:
            shown = "(set)" if value else "(not set)"
        elif setting.name == "DATABASE_URL":
            shown = _redact_url(str(value))
        else:
            shown = str(value)
        rows.append((f"ATTEST_{setting.name}", shown, setting.help))
    return rows


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable)"
