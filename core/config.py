"""Configuration: typed defaults, overridden by ATTEST_* environment variables, validated at start-up.

Core declares its own settings here; each package declares its settings in its `SETTINGS` (e.g. qms: the document
number pattern), registered when the application module is imported (`register`), so every setting is read, typed
and validated in this one place and listed on the Configuration page in its position. There is deliberately no
setting that turns the audit trail or versioning off.
"""

from __future__ import annotations

import os
import secrets
import sysconfig
from collections.abc import Callable
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
    position: int = 0  # the Configuration page's order
    check: Callable[[Any], str | None] | None = None  # a further rule: the message naming what is wrong, or None
    upload_mb: bool = False  # the largest upload a page accepts, in MB: requests may carry it (MAX_CONTENT_LENGTH)

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
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise ConfigError(f"{label} {problem}")


def _time_zone(value: Any) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"must be an IANA time zone name, got {value!r}"
    return None


SETTINGS: list[Setting] = [
    Setting("DATABASE_URL", str, None, "SQLAlchemy URL; default sqlite:///<instance>/attest.db", position=10),
    Setting("SECRET_KEY", str, None, "Session signing key; generated into the instance folder when unset", secret=True,
            position=20),
    Setting("SESSION_IDLE_MINUTES", int, 15, "Idle timeout of a login session, minutes", 1, 480, position=30),
    Setting("SESSION_MAX_HOURS", int, 12, "Absolute lifetime of a login session, hours", 1, 72, position=40),
    Setting("LOCKOUT_THRESHOLD", int, 5, "Consecutive failed password/TOTP attempts that lock an account", 1, 20,
            position=50),
    Setting("PASSWORD_MIN_LENGTH", int, 12, "Minimum password length", 12, 128, position=60),
    Setting("PASSWORD_HISTORY", int, 5, "A new password may not equal any of the last N", 1, 24, position=70),
    Setting("TOTP_REQUIRED", str, "signers", "Who must use a TOTP second factor: all, signers or none",
            choices=("all", "signers", "none"), position=80),
    Setting("TOTP_ISSUER", str, "Attest", "Issuer name shown in authenticator apps", position=90),
    Setting("LOGIN_RATE_LIMIT", str, "20 per minute", "Login attempts allowed per client address", position=100),
    Setting("API_RATE_LIMIT", str, "600 per minute", "JSON API requests allowed per client address", position=110),
    Setting("API_REFUSAL_RATE_LIMIT", str, "20 per minute",
            "JSON API requests without a valid token allowed per client address (each is audited)", position=120),
    Setting("RATELIMIT_STORAGE_URI", str, "memory://", "Rate-limit store (memory:// or redis://...)", position=130),
    Setting("SESSION_COOKIE_SECURE", bool, True, "Send the session cookie over HTTPS only", position=140),
    Setting("FORCE_HTTPS", bool, False, "Redirect HTTP to HTTPS and send HSTS (behind TLS termination)", position=150),
    Setting("PROXY_FIX", bool, False, "Trust one proxy's X-Forwarded-For/Proto headers (behind a load balancer)",
            position=160),
    Setting("DEFAULT_TIMEZONE", str, "UTC", "Time zone for users who have not chosen one (IANA name)",
            check=_time_zone, position=170),
    Setting("INSTANCE_PATH", str, None,
            "Folder of this installation's own files (generated secret key, default SQLite database, validation run "
            "logs); default <checkout>/instance in a source checkout, ./instance when installed from a wheel",
            position=210),
]

BY_NAME = {s.name: s for s in SETTINGS}


def register(*settings: Setting) -> None:
    """A package's settings (its `SETTINGS`), read and validated with core's. Registering the same setting again
    changes nothing; a name declared again with another meaning is refused."""
    for setting in settings:
        known = BY_NAME.get(setting.name)
        if known is not None:
            if known != setting:
                raise ValueError(f"setting ATTEST_{setting.name} is declared twice, differently")
            continue
        BY_NAME[setting.name] = setting
        SETTINGS.append(setting)
    SETTINGS.sort(key=lambda s: s.position)


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
        MAX_CONTENT_LENGTH=max(50, max((values[s.name] for s in SETTINGS if s.upload_mb), default=0) + 10)
        * 1024 * 1024,
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
