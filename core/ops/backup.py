"""Backup and restore of the whole database, with a manifest that lets a restore prove it brought back what was saved.

A backup is two files: PATH (the database itself: a SQLite database file made with the sqlite3 online backup API, or
a pg_dump custom-format archive) and PATH.manifest.json (when, which application version and Alembic revision, the
row count of every table, the audit chain head, the SHA-256 of PATH). The database file stays directly usable with
the standard tools (sqlite3, pg_restore) in a disaster, and the manifest is readable with any text editor.

The manifest's counts and chain head are read from the very snapshot that was saved: on SQLite from the backup copy
itself, on PostgreSQL in a REPEATABLE READ transaction whose snapshot pg_dump shares (`--snapshot`), so a backup taken
while the application writes is still consistent with its manifest.

A restore refuses a file whose SHA-256 differs from its manifest and a backup from an Alembic revision this code does
not know, replaces the configured database, then checks the row counts, the revision, the chain head and the whole
audit trail (`core.audit.verify`, as `flask audit verify`), and only then records itself in the audit trail (an
event written before would be overwritten by the restore).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from core import audit
from core.clock import now_utc
from core.db import db, transaction
from core.errors import AttestError

FORMAT = "attest-backup"
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
# a restore into a PostgreSQL database that another session keeps locked fails after this instead of hanging; a
# statement_timeout set on the role must not cut a long restore short
PG_RESTORE_OPTIONS = "-c lock_timeout=60s -c statement_timeout=0"
_CHUNK = 1024 * 1024


class BackupError(AttestError):
    """A backup or restore was refused or failed; the message says why and what to do."""


# --- what a database holds ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseFacts:
    alembic_revision: str | None
    tables: dict[str, int]
    chain_head: dict[str, Any] | None  # {"seq": int, "hash": str}

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def database_facts(conn: sa.Connection) -> DatabaseFacts:
    """Alembic revision, row count of every table and the audit chain head, read on `conn` (one snapshot when the
    caller holds a transaction)."""
    quote = conn.dialect.identifier_preparer.quote
    names = sorted(sa.inspect(conn).get_table_names())
    tables = {name: conn.execute(sa.text(f"SELECT count(*) FROM {quote(name)}")).scalar_one() for name in names}
    revision = None
    if "alembic_version" in tables:
        revisions = conn.execute(sa.text("SELECT version_num FROM alembic_version ORDER BY version_num")).scalars()
        revision = ",".join(revisions) or None
    head = None
    if "audit_chain_head" in tables:
        row = conn.execute(sa.text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")).one_or_none()
        head = {"seq": row[0], "hash": row[1]} if row else None
    return DatabaseFacts(revision, tables, head)


def _current_facts() -> DatabaseFacts:
    with db.engine.connect() as conn, conn.begin():
        return database_facts(conn)


def _server_version(conn: sa.Connection) -> str:
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql("SHOW server_version").scalar_one()
    return sqlite3.sqlite_version


def _app_version() -> str:
    try:
        return metadata.version("attest")
    except metadata.PackageNotFoundError:
        return "unknown"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


# --- files ----------------------------------------------------------------------------------------------------------


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _private_file(beside: Path) -> Path:
    """A new empty file next to `beside`, readable by its owner only (a backup holds password hashes and TOTP
    secrets), under a hidden temporary name that is renamed into place once complete."""
    fd, name = tempfile.mkstemp(dir=beside.parent, prefix=f".{beside.name}.", suffix=".partial")
    os.close(fd)
    return Path(name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    target = manifest_path(path)
    tmp = _private_file(target)
    try:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_manifest(path: Path) -> dict[str, Any]:
    target = manifest_path(path)
    if not path.is_file():
        raise BackupError(f"no backup file {path}")
    if not target.is_file():
        raise BackupError(f"no manifest {target} next to the backup: without it the backup cannot be verified")
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"the manifest {target} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{target} is not an Attest backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{target} has manifest format version {manifest.get('format_version')!r}; this release "
                          f"reads version {FORMAT_VERSION}")
    shapes = {"created_at": str, "alembic_revision": str, "tables": dict, "file": dict, "database": dict}
    wrong = [key for key, kind in shapes.items() if not isinstance(manifest.get(key), kind)]
    if wrong:
        raise BackupError(f"the manifest {target} lacks {', '.join(wrong)}: it is damaged")
    return manifest


# --- PostgreSQL client tools ----------------------------------------------------------------------------------------

_SECRET_KEYWORDS = ("password", "sslpassword")


def _conninfo_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pg_connection(url: sa.URL, *, options: str = "") -> tuple[str, dict[str, str]]:
    """The libpq connection for pg_dump/pg_restore from the application's SQLAlchemy URL: a conninfo string for
    `--dbname` (host, port, user, database and the URL's query parameters, never a secret) and the environment,
    where the password travels as PGPASSWORD. Process listings show the argv, not the environment."""
    params: dict[str, str] = {}
    if url.host:
        params["host"] = url.host
    if url.port:
        params["port"] = str(url.port)
    if url.username:
        params["user"] = url.username
    if url.database:
        params["dbname"] = url.database
    env = dict(os.environ)
    password = url.password
    for key, value in url.query.items():
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        if key == "password":
            password = text
        elif key in _SECRET_KEYWORDS:
            raise BackupError(f"the database URL carries {key}, which pg_dump could only receive on its command line: "
                              f"use a key without a passphrase or a libpq service file (PGSERVICEFILE)")
        else:
            params[key] = text
    if options:
        params["options"] = f"{params.get('options', '')} {options}".strip()
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return " ".join(f"{k}={_conninfo_quote(v)}" for k, v in params.items()), env


@dataclass(frozen=True)
class PgTool:
    path: str
    version: str  # the tool's --version line
    major: int


_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def _major(version: str) -> int:
    match = re.match(r"\s*(\d+)", version or "")
    return int(match.group(1)) if match else 0


def _tool_version(path: str) -> PgTool | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(out.stdout)
    if out.returncode != 0 or not match:
        return None
    return PgTool(path, out.stdout.strip(), int(match.group(1)))


def find_pg_tool(name: str, *, min_major: int, pg_bin: Path | None = None, why: str) -> PgTool:
    """`name` (pg_dump or pg_restore) of at least major version `min_major`: from `pg_bin` when given, else from
    PATH, else from the usual per-version folders of Debian/Ubuntu and RHEL packages."""
    if pg_bin is not None:
        candidates = [str(pg_bin / name)]
    else:
        candidates = [shutil.which(name) or "", f"/usr/lib/postgresql/{min_major}/bin/{name}",
                      f"/usr/pgsql-{min_major}/bin/{name}"]
    found = [tool for tool in map(_tool_version, filter(os.path.isfile, filter(None, candidates))) if tool]
    for tool in found:
        if tool.major >= min_major:
            return tool
    where = f"in {pg_bin}" if pg_bin is not None else "on PATH"
    if not found:
        raise BackupError(f"{name} not found {where}: install the PostgreSQL {min_major} client tools (Debian: "
                          f"apt-get install postgresql-client-{min_major}) or name their folder with --pg-bin")
    seen = ", ".join(f"{t.path} ({t.major})" for t in found)
    raise BackupError(f"{name} {min_major} or newer is needed ({why}); found {seen}: install the PostgreSQL "
                      f"{min_major} client tools or name their folder with --pg-bin")


def _run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip()
        raise BackupError(f"{what} failed (exit {out.returncode}): {detail}")


# --- create ---------------------------------------------------------------------------------------------------------


def _sqlite_file() -> Path:
    database = db.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"the SQLite database {database!r} is not a file that can be backed up")
    return Path(database).resolve()


def _sqlite_copy(source_uri: str, target: Path, pragmas: tuple[str, ...], failure: str) -> list[tuple]:
    """Copy the database at `source_uri` into `target` with SQLite's backup API in one step (one read transaction on
    the source, one write transaction on the target), then run `pragmas` on the target; the last one's rows."""
    rows: list[tuple] = []
    try:
        with closing(sqlite3.connect(source_uri, uri=True, timeout=60)) as source, \
                closing(sqlite3.connect(target, isolation_level=None, timeout=60)) as dest:
            source.backup(dest)
            for pragma in pragmas:
                rows = dest.execute(pragma).fetchall()
    except sqlite3.Error as exc:
        raise BackupError(f"{failure}: {exc}") from None
    return rows


def _backup_sqlite(tmp: Path) -> tuple[DatabaseFacts, dict[str, Any]]:
    source_path = _sqlite_file()
    if not source_path.is_file():
        raise BackupError(f"no database file {source_path}")
    # the copy is one consistent snapshot, taken while the application keeps writing (WAL); the backup file is
    # self-contained (journal mode DELETE: no -wal beside it)
    check = _sqlite_copy(source_path.as_uri(), tmp, ("PRAGMA journal_mode=DELETE", "PRAGMA quick_check"),
                         "the SQLite backup failed")
    if check != [("ok",)]:
        raise BackupError(f"the backup copy fails SQLite's quick_check: {check[:5]}")
    engine = sa.create_engine(sa.engine.URL.create("sqlite", database=str(tmp)), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn, conn.begin():
            facts = database_facts(conn)
    finally:
        engine.dispose()
    return facts, {"method": "sqlite3 online backup API", "name": source_path.name,
                   "server_version": sqlite3.sqlite_version}


def _backup_postgres(tmp: Path, pg_bin: Path | None) -> tuple[DatabaseFacts, dict[str, Any]]:
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        server_version = _server_version(conn)
        server_major = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000
        tool = find_pg_tool("pg_dump", min_major=server_major, pg_bin=pg_bin,
                            why=f"pg_dump refuses a server newer than itself; the server is {server_version}")
        snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        facts = database_facts(conn)
        conninfo, env = pg_connection(db.engine.url)
        _run_tool([tool.path, "--format=custom", "--no-password", f"--snapshot={snapshot}", f"--file={tmp}",
                   f"--dbname={conninfo}"], env, "pg_dump")
    return facts, {"method": "pg_dump custom format (-Fc)", "name": db.engine.url.database,
                   "server_version": server_version, "tool": tool.version, "tool_major": tool.major}


def create(path: Path, *, force: bool = False, pg_bin: Path | None = None) -> dict[str, Any]:
    """Write the backup PATH and PATH.manifest.json, then record `backup.created`. Returns the manifest.

    Both files are written under temporary names and renamed into place (the manifest last), so a failed or
    interrupted backup never leaves a file that looks complete."""
    path = Path(path).absolute()
    target_manifest = manifest_path(path)
    if not path.parent.is_dir():
        raise BackupError(f"the folder {path.parent} does not exist")
    if path.is_dir():
        raise BackupError(f"{path} is a folder; name the backup file")
    existing = [str(p) for p in (path, target_manifest) if p.exists()]
    if existing and not force:
        raise BackupError(f"{' and '.join(existing)} already exist(s): choose another name or pass --force")
    dialect = db.engine.dialect.name
    if dialect == "sqlite" and path.resolve() == _sqlite_file():
        raise BackupError("the backup file cannot be the live database file")

    tmp = _private_file(path)
    started, created_at = time.monotonic(), now_utc()
    try:
        if dialect == "sqlite":
            facts, source = _backup_sqlite(tmp)
        elif dialect == "postgresql":
            facts, source = _backup_postgres(tmp, pg_bin)
        else:
            raise BackupError(f"backups of {dialect} databases are not supported")
        if facts.alembic_revision is None:
            raise BackupError("the database has no Alembic revision: run `flask db upgrade` before backing it up")
        _fsync(tmp)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": created_at.isoformat(),
            "created_by": f"OS user {_os_user()}",
            "application": {"name": "attest", "version": _app_version()},
            "database": {"dialect": dialect, **source},
            "alembic_revision": facts.alembic_revision,
            "audit_chain_head": facts.chain_head,
            "tables": facts.tables,
            "file": {"name": path.name, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp)},
        }
        if force:
            target_manifest.unlink(missing_ok=True)  # never an old manifest beside the new file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_manifest(path, manifest)
    manifest["seconds"] = round(time.monotonic() - started, 2)
    with transaction():
        audit.record_event("backup.created", file=str(path), sha256=manifest["file"]["sha256"],
                           bytes=manifest["file"]["bytes"], alembic_revision=facts.alembic_revision,
                           chain_seq=(facts.chain_head or {}).get("seq"), tables=len(facts.tables), rows=facts.rows)
    return manifest


# --- restore --------------------------------------------------------------------------------------------------------


def _script_directory():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())


@dataclass
class RestorePlan:
    """A backup that passed every check that can be made before the database is touched."""

    path: Path
    manifest: dict[str, Any]
    code_head: str
    older: bool  # the backup's revision is behind the code's: `flask db upgrade` follows the restore
    target: str
    tool: PgTool | None = None
    warnings: list[str] = field(default_factory=list)


def _describe_target() -> str:
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {_sqlite_file()}"
    return f"PostgreSQL database {url.database!r} on {url.host or 'the local socket'}"


def plan_restore(path: Path, *, pg_bin: Path | None = None) -> RestorePlan:
    """Check the backup against its manifest and this installation; raise BackupError on anything that would make
    the restore wrong. Nothing is changed."""
    path = Path(path).absolute()
    if path.name.endswith(MANIFEST_SUFFIX):
        path = path.with_name(path.name[: -len(MANIFEST_SUFFIX)])
    manifest = load_manifest(path)
    expected = manifest.get("file") or {}
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise BackupError(f"{path} has {size} bytes, its manifest says {expected.get('bytes')}: the file is "
                          f"incomplete or was changed; it is not restored")
    actual = sha256_file(path)
    if actual != expected.get("sha256"):
        raise BackupError(f"SHA-256 of {path} is {actual}, its manifest says {expected.get('sha256')}: the file "
                          f"was changed or damaged; it is not restored")
    dialect = db.engine.dialect.name
    backup_dialect = manifest["database"].get("dialect")
    if backup_dialect != dialect:
        raise BackupError(f"the backup is of a {backup_dialect} database and this installation uses {dialect}: "
                          f"restore it into a {backup_dialect} installation")

    script = _script_directory()
    heads = script.get_heads()
    revision = manifest.get("alembic_revision") or ""
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [r for r in revision.split(",") if r not in known]
    if unknown:
        raise BackupError(f"the backup is at Alembic revision {revision}, which this code does not know (its newest "
                          f"is {', '.join(heads)}): it comes from a newer Attest release; restore it with that "
                          f"release or newer")
    plan = RestorePlan(path, manifest, ",".join(heads), revision != ",".join(heads), _describe_target())

    if dialect == "postgresql":
        with db.engine.connect() as conn:
            server_major = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000
            others = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()").scalar_one()
        dump_major = int(manifest["database"].get("tool_major") or server_major)
        plan.tool = find_pg_tool("pg_restore", min_major=dump_major, pg_bin=pg_bin,
                                 why=f"the archive was written by pg_dump {dump_major}")
        if others:
            plan.warnings.append(f"{others} other session(s) are connected to the database: stop the application "
                                 f"servers and scheduled jobs first (the restore waits at most 60 s for their locks)")
        if _major(str(manifest["database"].get("server_version"))) > server_major:
            plan.warnings.append(f"the backup comes from PostgreSQL {manifest['database']['server_version']}, newer "
                                 f"than this server ({server_major})")
    return plan


def _restore_sqlite(path: Path) -> None:
    target = _sqlite_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    # written through SQLite's own locking and WAL: connections elsewhere see either the old or the restored
    # database, never a mix, and no -wal file keeps pages of the old one
    _sqlite_copy(path.resolve().as_uri() + "?mode=ro", target, ("PRAGMA journal_mode=WAL",
                 "PRAGMA wal_checkpoint(TRUNCATE)"), "the SQLite restore failed (the database was left as it was)")


def _restore_postgres(plan: RestorePlan) -> None:
    # tables of this code that the backup does not have (added by migrations after it was taken) would survive
    # pg_restore --clean and block the `flask db upgrade` that follows; tables Attest does not know stay untouched
    ours = set(db.metadata.tables) | {"alembic_version"}
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL lock_timeout = '60s'")
        quote = conn.dialect.identifier_preparer.quote
        for name in sorted((set(sa.inspect(conn).get_table_names()) & ours) - set(plan.manifest["tables"])):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)} CASCADE")
    db.engine.dispose()
    conninfo, env = pg_connection(db.engine.url, options=PG_RESTORE_OPTIONS)
    # --clean drops and recreates every object of the archive: DROP and CREATE are not row deletes, so the audit
    # append-only triggers do not fire, and the archive recreates them after its data; one transaction: on any
    # error nothing is changed
    _run_tool([plan.tool.path, "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
               "--no-password", f"--dbname={conninfo}", str(plan.path)], env,
              "pg_restore (the database was left as it was)")


@dataclass
class RestoreReport:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _compare(manifest: dict[str, Any], facts: DatabaseFacts, report: RestoreReport) -> None:
    expected: dict[str, int] = manifest["tables"]
    for name, count in sorted(expected.items()):
        actual = facts.tables.get(name)
        if actual is None:
            report.problems.append(f"table {name} is missing after the restore")
        elif actual != count:
            report.problems.append(f"table {name}: {actual} rows after the restore, {count} in the manifest")
    extra = sorted(set(facts.tables) & (set(db.metadata.tables) | {"alembic_version"}) - set(expected))
    for name in extra:
        report.problems.append(f"table {name} exists after the restore but is not in the backup")
    if not report.problems:
        report.lines.append(f"row counts: {len(expected)} tables, {sum(expected.values())} rows, as in the manifest")
    if facts.alembic_revision != manifest["alembic_revision"]:
        report.problems.append(f"Alembic revision after the restore is {facts.alembic_revision}, the manifest says "
                               f"{manifest['alembic_revision']}")
    if facts.chain_head != manifest.get("audit_chain_head"):
        report.problems.append(f"audit chain head after the restore is {facts.chain_head}, the manifest says "
                               f"{manifest.get('audit_chain_head')}")
    elif facts.chain_head:
        report.lines.append(f"audit chain head: position {facts.chain_head['seq']}, hash "
                            f"{facts.chain_head['hash'][:16]}…, as in the manifest")


def restore(plan: RestorePlan) -> RestoreReport:
    """Replace the configured database with the backup of `plan`, check the result, record `backup.restored`."""
    report = RestoreReport()
    try:
        replaced = _current_facts()
    except sa.exc.SQLAlchemyError:
        replaced = None  # an empty or damaged database: nothing to describe
    db.session.remove()
    db.engine.dispose()  # no pooled connection may keep the old database open (SQLite WAL) or locked (PostgreSQL)
    started = time.monotonic()
    if db.engine.dialect.name == "sqlite":
        _restore_sqlite(plan.path)
    else:
        _restore_postgres(plan)
    db.engine.dispose()
    report.lines.append(f"restored {plan.target} from {plan.path} in {time.monotonic() - started:.1f} s")

    facts = _current_facts()
    _compare(plan.manifest, facts, report)
    revision = plan.manifest["alembic_revision"]
    verified = None
    if not plan.older:
        report.lines.append(f"Alembic revision: {revision}, this code's newest")
    else:
        report.lines.append(f"Alembic revision: {revision}, older than this code's {plan.code_head}: run "
                            f"`flask --app app db upgrade` now")
    try:
        result = audit.verify()
    except sa.exc.SQLAlchemyError as exc:
        if not plan.older:
            report.problems.append(f"audit verify could not read the restored database: {exc.orig or exc}")
        else:
            report.lines.append("audit trail: not verified on the older schema; run `flask --app app db upgrade`, "
                                "then `flask --app app audit verify`")
    else:
        verified = result.ok
        summary = (f"checked {result.transactions} transactions, {result.version_rows} version rows, "
                   f"{result.records} records")
        if result.ok:
            report.lines.append(f"audit verify: {summary}: audit trail intact")
        else:
            report.problems.append(f"audit verify: {summary}: {result.chain_error or ''}".rstrip(": "))
            report.problems.extend(result.record_problems)

    manifest = plan.manifest
    try:
        with transaction():
            audit.record_event(
                "backup.restored", file=str(plan.path), sha256=manifest["file"]["sha256"],
                backup_created_at=manifest["created_at"], alembic_revision=revision,
                chain_seq=(manifest.get("audit_chain_head") or {}).get("seq"),
                replaced_alembic_revision=replaced.alembic_revision if replaced else None,
                replaced_chain_head=replaced.chain_head if replaced else None,
                checks="passed" if report.ok else "failed", audit_verified=verified)
    except sa.exc.SQLAlchemyError as exc:
        report.problems.append(f"the restore could not be recorded in the audit trail: {exc.orig or exc}")
    else:
        report.lines.append("restore recorded in the audit trail (backup.restored)")
    return report


# --- flask backup ... -----------------------------------------------------------------------------------------------

backup_cli = AppGroup("backup", help="Back up and restore the database (with a verifiable manifest).")

_PG_BIN = click.option("--pg-bin", type=click.Path(file_okay=False, exists=True, path_type=Path),
                       help="PostgreSQL: folder holding pg_dump and pg_restore (default: PATH, then the "
                            "server's version folder such as /usr/lib/postgresql/15/bin).")


def _refuse(exc: AttestError):
    raise click.ClickException(exc.message) from None


@backup_cli.command("create")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing backup file and its manifest.")
@_PG_BIN
def backup_create(path: Path, force: bool, pg_bin: Path | None) -> None:
    """Back up the database to PATH and write PATH.manifest.json beside it (safe while the application runs)."""
    try:
        manifest = create(path, force=force, pg_bin=pg_bin)
    except AttestError as exc:
        _refuse(exc)
    head = manifest["audit_chain_head"] or {}
    click.echo(f"backup {Path(path).absolute()} ({manifest['file']['bytes']} bytes, {manifest['seconds']} s)")
    click.echo(f"manifest {manifest_path(Path(path).absolute())}")
    click.echo(f"{manifest['database']['dialect']}, Alembic revision {manifest['alembic_revision']}, "
               f"{len(manifest['tables'])} tables, {sum(manifest['tables'].values())} rows, audit chain position "
               f"{head.get('seq')}")
    click.echo(f"SHA-256 {manifest['file']['sha256']}")


def _describe(plan: RestorePlan) -> None:
    m = plan.manifest
    click.echo(f"backup {plan.path}: created {m['created_at']} by Attest {m['application']['version']}, "
               f"{m['database']['dialect']}, Alembic revision {m['alembic_revision']}, "
               f"audit chain position {(m.get('audit_chain_head') or {}).get('seq')}")
    click.echo(f"SHA-256 {m['file']['sha256']} matches the manifest")
    for warning in plan.warnings:
        click.echo(f"WARNING: {warning}", err=True)


@backup_cli.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_PG_BIN
def backup_check(path: Path, pg_bin: Path | None) -> None:
    """Check a backup against its manifest and this installation without restoring it."""
    try:
        plan = plan_restore(path, pg_bin=pg_bin)
    except AttestError as exc:
        _refuse(exc)
    _describe(plan)
    click.echo("the backup can be restored here" + (" (then run `flask db upgrade`)" if plan.older else ""))


@backup_cli.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Confirm that the current database is replaced (every change made since "
                                          "the backup is lost).")
@_PG_BIN
def backup_restore(path: Path, yes: bool, pg_bin: Path | None) -> None:
    """Replace the current database with the backup PATH, then verify counts, revision and the audit trail."""
    try:
        plan = plan_restore(path, pg_bin=pg_bin)
    except AttestError as exc:
        _refuse(exc)
    _describe(plan)
    if not yes:
        question = (f"Replace the {plan.target} with this backup? Everything changed since "
                    f"{plan.manifest['created_at']} is lost")
        if not sys.stdin.isatty():
            raise click.ClickException("a restore replaces the current database: confirm with --yes")
        click.confirm(question, abort=True)
    try:
        report = restore(plan)
    except AttestError as exc:
        _refuse(exc)
    for line in report.lines:
        click.echo(line)
    for problem in report.problems:
        click.echo(f"FAILED: {problem}", err=True)
    if not report.ok:
        sys.exit(1)
    if plan.older:
        click.echo("restore complete: now run `flask --app app db upgrade`, then `flask --app app audit verify`")
    else:
        click.echo("restore complete and verified")
