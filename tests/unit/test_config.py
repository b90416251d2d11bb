"""Configuration from ATTEST_* variables: typed, validated at start-up, with safe defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

import app  # noqa: F401  (the packages' settings registered with core's)
from core import config


def test_defaults_are_safe(tmp_path, monkeypatch):
    for s in config.SETTINGS:
        monkeypatch.delenv(f"ATTEST_{s.name}", raising=False)
    cfg = config.load(str(tmp_path))
    assert cfg["SESSION_COOKIE_SECURE"] is True
    assert cfg["SESSION_COOKIE_HTTPONLY"] is True
    assert cfg["ATTEST_LOCKOUT_THRESHOLD"] == 5
    assert cfg["ATTEST_SESSION_IDLE_MINUTES"] == 15
    assert cfg["ATTEST_PASSWORD_MIN_LENGTH"] == 12
    assert cfg["ATTEST_TOTP_REQUIRED"] == "signers"
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'attest.db'}"


def test_secret_key_is_generated_once_into_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTEST_SECRET_KEY", raising=False)
    first = config.load(str(tmp_path))["SECRET_KEY"]
    second = config.load(str(tmp_path))["SECRET_KEY"]
    assert first == second and len(first) >= 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_environment_variables_override_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTEST_LOCKOUT_THRESHOLD", "3")
    monkeypatch.setenv("ATTEST_TOTP_REQUIRED", "all")
    monkeypatch.setenv("ATTEST_DATABASE_URL", "postgresql+psycopg://app@db/attest")
    cfg = config.load(str(tmp_path))
    assert cfg["ATTEST_LOCKOUT_THRESHOLD"] == 3
    assert cfg["ATTEST_TOTP_REQUIRED"] == "all"
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://app@db/attest"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOCKOUT_THRESHOLD", "0", "ATTEST_LOCKOUT_THRESHOLD must be at least 1"),
        ("LOCKOUT_THRESHOLD", "five", "ATTEST_LOCKOUT_THRESHOLD must be a whole number"),
        ("PASSWORD_MIN_LENGTH", "8", "ATTEST_PASSWORD_MIN_LENGTH must be at least 12"),
        ("TOTP_REQUIRED", "sometimes", "ATTEST_TOTP_REQUIRED must be one of all, signers, none"),
        ("SESSION_COOKIE_SECURE", "maybe", "ATTEST_SESSION_COOKIE_SECURE must be true or false"),
        ("DEFAULT_TIMEZONE", "Mars/Olympus", "ATTEST_DEFAULT_TIMEZONE must be an IANA time zone name"),
        ("SECRET_KEY", "short", "ATTEST_SECRET_KEY must be at least 32 characters"),
        ("DOCUMENT_NUMBER_PATTERN", "^SOP-(", "ATTEST_DOCUMENT_NUMBER_PATTERN must be a valid regular expression"),
        ("MAX_UPLOAD_MB", "0", "ATTEST_MAX_UPLOAD_MB must be at least 1"),
        ("MAX_UPLOAD_MB", "500", "ATTEST_MAX_UPLOAD_MB must be at most 200"),
    ],
)
def test_invalid_settings_stop_start_up_with_a_message_naming_the_variable(tmp_path, monkeypatch, name, value,
                                                                          message):
    monkeypatch.setenv(f"ATTEST_{name}", value)
    with pytest.raises(config.ConfigError, match=message):
        config.load(str(tmp_path))


def test_configuration_page_never_shows_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTEST_SECRET_KEY", "s3cr3t-" * 6)
    monkeypatch.setenv("ATTEST_DATABASE_URL", "postgresql+psycopg://app:hunter2@db/attest")
    rows = dict((k, v) for k, v, _ in config.describe(config.load(str(tmp_path))))
    assert rows["ATTEST_SECRET_KEY"] == "(set)"
    assert "hunter2" not in rows["ATTEST_DATABASE_URL"]


def test_instance_folder_comes_from_the_default_or_attest_instance_path(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTEST_INSTANCE_PATH", raising=False)
    assert config.instance_path(tmp_path / "instance") == str(tmp_path / "instance")
    monkeypatch.setenv("ATTEST_INSTANCE_PATH", str(tmp_path / "elsewhere"))
    assert config.instance_path(tmp_path / "instance") == str(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTEST_INSTANCE_PATH", "relative")
    assert config.instance_path(tmp_path / "instance") == str(tmp_path / "relative")
    assert config.load(str(tmp_path / "relative"))["ATTEST_INSTANCE_PATH"] == str(tmp_path / "relative")


def test_an_instance_folder_inside_the_installed_packages_or_naming_a_file_is_refused(tmp_path, monkeypatch):
    import sysconfig

    monkeypatch.setenv("ATTEST_INSTANCE_PATH", str(Path(sysconfig.get_paths()["purelib"]) / "instance"))
    with pytest.raises(config.ConfigError, match="inside the installed packages .* set ATTEST_INSTANCE_PATH"):
        config.instance_path(tmp_path)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("ATTEST_INSTANCE_PATH", str(tmp_path / "a-file"))
    with pytest.raises(config.ConfigError, match="ATTEST_INSTANCE_PATH must name a folder, but .* is a file"):
        config.instance_path(tmp_path)
    monkeypatch.setenv("ATTEST_INSTANCE_PATH", "  ")
    with pytest.raises(config.ConfigError, match="ATTEST_INSTANCE_PATH must name a folder"):
        config.instance_path(tmp_path)


def test_each_package_declares_its_own_settings_read_with_cores_in_the_configuration_pages_order():
    """Core names none of the packages' settings; they are registered with core's and listed in their positions."""
    import qms
    import training
    import validation

    own = {"qms": qms.SETTINGS, "training": training.SETTINGS, "validation": validation.SETTINGS}
    names = [s.name for s in config.SETTINGS]
    assert names == ["DATABASE_URL", "SECRET_KEY", "SESSION_IDLE_MINUTES", "SESSION_MAX_HOURS", "LOCKOUT_THRESHOLD",
                     "PASSWORD_MIN_LENGTH", "PASSWORD_HISTORY", "TOTP_REQUIRED", "TOTP_ISSUER", "LOGIN_RATE_LIMIT",
                     "API_RATE_LIMIT", "API_REFUSAL_RATE_LIMIT", "RATELIMIT_STORAGE_URI", "SESSION_COOKIE_SECURE",
                     "FORCE_HTTPS", "PROXY_FIX", "DEFAULT_TIMEZONE", "DOCUMENT_NUMBER_PATTERN",
                     "TRAINING_SUPERSEDED_POLICY", "MAX_UPLOAD_MB", "INSTANCE_PATH", "VALIDATION_DATABASE_URL"]
    source = Path(config.__file__).read_text()
    for package, settings in own.items():
        for setting in settings:
            assert setting.name not in source, f"core.config names {package}'s setting {setting.name}"
    config.register(*qms.SETTINGS)  # again: nothing changes
    assert [s.name for s in config.SETTINGS] == names
    with pytest.raises(ValueError, match="declared twice"):
        config.register(config.Setting("MAX_UPLOAD_MB", int, 5, "Another meaning"))
