"""`flask backup create` / `restore`: a restore brings back exactly what the manifest describes, on SQLite and (with
pg_dump and pg_restore, really run) on PostgreSQL, and refuses a changed file, a newer release's backup, an overwrite
without --force and a restore without --yes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core.audit import AuditEvent
from core.auth import services
from core.db import db
from core.ops import backup as backups
from features.support.documents import approved_revision, new_document, setup_people
from signatures.models import Signature
from testkit.plugin import is_postgres


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=[str(a) for a in args])


@pytest.fixture
def pg_tools():
    """On PostgreSQL the tests run the real pg_dump and pg_restore; CI (ATTEST_REQUIRE_POSTGRES=1) fails without."""
    if not is_postgres() or (shutil.which("pg_dump") and shutil.which("pg_restore")):
        return
    message = "pg_dump/pg_restore not found on PATH (Debian: apt-get install postgresql-client)"
    if os.environ.get("ATTEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _create(app, path: Path) -> Path:
    result = _cli(app, "backup", "create", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def backup(app, make_user, pg_tools, tmp_path) -> Path:
    """A small database backed up to a file."""
    make_user("early.user", roles={"operator"})
    return _create(app, tmp_path / "attest.backup")


def _manifest(path: Path) -> dict:
    return json.loads(backups.manifest_path(path).read_text())


def _facts() -> backups.DatabaseFacts:
    db.session.remove()
    with db.engine.connect() as conn:
        return backups.database_facts(conn)


def _events(event_type: str) -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event_type == event_type)))


def test_restore_brings_back_the_backup_exactly_and_the_audit_trail_verifies(app, make_user, pg_tools, tmp_path):
    people = setup_people(make_user)  # users and an approved document with its signatures
    approved_revision(people, new_document(people))
    backup = _create(app, tmp_path / "attest.backup")
    manifest = _manifest(backup)
    assert manifest["format"] == "attest-backup" and manifest["database"]["dialect"] == db.engine.dialect.name
    assert manifest["alembic_revision"] and manifest["application"]["version"]
    assert manifest["file"]["sha256"] == backups.sha256_file(backup)
    assert manifest["tables"]["core_user"] == 6 and manifest["tables"]["sig_signature"] >= 3
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # password hashes and TOTP secrets inside
    created = _events("backup.created")
    assert [json.loads(e.detail)["sha256"] for e in created] == [manifest["file"]["sha256"]]
    head_after_backup = _facts().chain_head
    assert head_after_backup["seq"] == manifest["audit_chain_head"]["seq"] + 1  # the backup.created transaction

    make_user("late.user", roles={"operator"})
    result = _cli(app, "backup", "restore", backup, "--yes")
    assert result.exit_code == 0, result.output
    assert "as in the manifest" in result.output and "audit trail intact" in result.output

    assert services.get_by_username("late.user") is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == manifest["tables"]["sig_signature"]
    after = _facts()
    restore_tx = {"audit_transaction": 1, "audit_event": 1}  # the backup.restored event, written after the checks
    assert {t: n - restore_tx.get(t, 0) for t, n in after.tables.items()} == manifest["tables"]
    assert after.chain_head["seq"] == manifest["audit_chain_head"]["seq"] + 1
    verify = _cli(app, "audit", "verify")
    assert verify.exit_code == 0, verify.output
    [restored] = _events("backup.restored")
    detail = json.loads(restored.detail)
    assert detail["sha256"] == manifest["file"]["sha256"] and detail["checks"] == "passed"
    assert detail["replaced_chain_head"]["seq"] > manifest["audit_chain_head"]["seq"]
    assert _events("backup.created") == []  # written after the snapshot: not part of the backup


def test_a_changed_or_truncated_backup_file_is_refused_and_nothing_is_restored(app, backup, make_user):
    make_user("late.user", roles={"operator"})
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.write_bytes(bytes(data))
    result = _cli(app, "backup", "restore", backup, "--yes")
    assert result.exit_code != 0
    assert "SHA-256" in result.output and "not restored" in result.output
    backup.write_bytes(bytes(data[:-10]))
    result = _cli(app, "backup", "restore", backup, "--yes")
    assert result.exit_code != 0 and "bytes" in result.output
    assert services.get_by_username("late.user") is not None
    assert _events("backup.restored") == []


def test_an_existing_backup_is_overwritten_only_with_force(app, backup):
    before = _manifest(backup)
    result = _cli(app, "backup", "create", backup)
    assert result.exit_code != 0 and "--force" in result.output
    assert _manifest(backup) == before
    result = _cli(app, "backup", "create", backup, "--force")
    assert result.exit_code == 0, result.output
    after = _manifest(backup)
    assert after["audit_chain_head"]["seq"] == before["audit_chain_head"]["seq"] + 1  # the first backup.created
    assert after["file"]["sha256"] == backups.sha256_file(backup)
    assert not list(backup.parent.glob(".*partial"))


def test_restore_without_yes_is_refused_and_changes_nothing(app, backup, make_user):
    make_user("late.user", roles={"operator"})
    result = _cli(app, "backup", "restore", backup)
    assert result.exit_code != 0 and "--yes" in result.output
    assert services.get_by_username("late.user") is not None


def test_a_backup_from_a_newer_release_another_database_or_without_manifest_is_refused(app, backup):
    manifest_file = backups.manifest_path(backup)
    original = manifest_file.read_text()
    manifest = json.loads(original)
    manifest_file.write_text(json.dumps({**manifest, "alembic_revision": "9999"}))
    result = _cli(app, "backup", "restore", backup, "--yes")
    assert result.exit_code != 0 and "newer Attest release" in result.output
    other = "sqlite" if db.engine.dialect.name == "postgresql" else "postgresql"
    manifest_file.write_text(json.dumps({**manifest, "database": {**manifest["database"], "dialect": other}}))
    result = _cli(app, "backup", "restore", backup, "--yes")
    assert result.exit_code != 0 and f"backup is of a {other} database" in result.output
    manifest_file.unlink()
    result = _cli(app, "backup", "restore", backup, "--yes")
    assert result.exit_code != 0 and "no manifest" in result.output
    manifest_file.write_text(original)
    check = _cli(app, "backup", "check", backup)
    assert check.exit_code == 0 and "can be restored here" in check.output, check.output


def test_pg_tools_get_the_password_in_their_environment_never_on_the_command_line():
    url = make_url("postgresql+psycopg://attest:s3cr%27t%20pw@db.example:5433/prod?sslmode=require")
    conninfo, env = backups.pg_connection(url, options="-c lock_timeout=60s")
    assert "s3cr" not in conninfo
    assert env["PGPASSWORD"] == "s3cr't pw"
    assert conninfo == ("host='db.example' port='5433' user='attest' dbname='prod' sslmode='require' "
                        "options='-c lock_timeout=60s'")
    with pytest.raises(backups.BackupError, match="sslpassword"):
        backups.pg_connection(make_url("postgresql+psycopg://a@h/d?sslpassword=x"))


def test_a_missing_or_too_old_pg_dump_is_refused_with_the_fix(tmp_path):
    with pytest.raises(backups.BackupError, match="pg_dump not found in .* postgresql-client-15"):
        backups.find_pg_tool("pg_dump", min_major=15, pg_bin=tmp_path, why="the server is 15.2")
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.9'\n")
    fake.chmod(0o755)
    with pytest.raises(backups.BackupError, match=r"pg_dump 15 or newer is needed \(the server is 15.2\); found .*"
                                                  r"\(12\).*--pg-bin"):
        backups.find_pg_tool("pg_dump", min_major=15, pg_bin=tmp_path, why="the server is 15.2")
    assert backups.find_pg_tool("pg_dump", min_major=12, pg_bin=tmp_path, why="").major == 12


@pytest.mark.skipif(is_postgres(), reason="SQLite only: a PostgreSQL backup is a dump file, never the database itself")
def test_a_sqlite_backup_never_overwrites_the_live_database_file_even_with_force(app, make_user):
    make_user("kept.user", roles={"operator"})
    live = Path(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database)
    before = _facts()
    result = _cli(app, "backup", "create", live, "--force")
    assert result.exit_code != 0 and "cannot be the live database file" in result.output, result.output
    assert _facts() == before
    assert _events("backup.created") == []
    assert not list(live.parent.glob(".*partial"))
