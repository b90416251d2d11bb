"""The validation package executed inside the installed system.

- Protocols are the feature files under features/iq, features/oq, features/pq (and the runner canaries under
  validation/canaries), found through the installed packages. Each file is executable only while its SHA-256 equals
  the SHA-256 of its approved version (`ProtocolVersion`, signed "Approved" by QA with the file's exact text). The
  same holds for each protocol's step code (STEP_CODE: every Python file its pytest process loads from Attest),
  approved as one entry, `features/iq (step code)`, whose text is the manifest of its files' SHA-256.
- A run executes one protocol with pytest-bdd in a separate process against a scratch database (a temporary SQLite
  file, or a database created for the run on the PostgreSQL server named by ATTEST_VALIDATION_DATABASE_URL), never
  the production database. validation.capture streams each scenario and step; this module stores them as they come,
  so the run page shows progress. A failed step raises a test incident: a draft deviation linked to the step.
- The executor signs the run "Executed", QA signs "Reviewed" then "Approved". Each signature binds the run's results
  (every step's outcome and evidence) and the environment fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import make_url

from core import audit
from core.auth.models import User
from core.auth.permissions import PERMISSIONS
from core.clock import now_utc
from core.db import db, default_reason, lock_row, transaction
from core.errors import InvalidTransition, NotPermitted, ValidationError
from signatures import models as sig
from signatures import services as signing
from signatures.lifecycle import (
    Act,
    Lifecycle,
    Rule,
    SystemTransition,
    Transition,
    comment,
    justification,
    never,
    only,
)
from signatures.services import SignerProof
from validation.models import (
    APPROVED,
    COMPLETED,
    ERROR,
    EXECUTED,
    FAILED,
    NOT_RUN,
    PASSED,
    PROTOCOLS,
    QUEUED,
    REVIEWED,
    RUN_APPROVED,
    RUN_STATUS_LABELS,
    RUNNING,
    SUPERSEDED,
    UNDEFINED,
    ProtocolVersion,
    RunFile,
    ScenarioResult,
    StepResult,
    ValidationRun,
)

# Each protocol's folder as recorded, a path inside the installed packages; the folder itself is found through its
# package (site-packages of an installation, or the checkout), never through a repository root. A test may point a
# protocol at a copy elsewhere with an absolute path.
PROTOCOL_DIRS = {"IQ": "features/iq", "OQ": "features/oq", "PQ": "features/pq", "CANARY": "validation/canaries"}
# The packages a recorded path may start with: a protocol's files, its step code and the test harness live in them.
RECORDED_PACKAGES = ("features", "validation", "core", "testkit")
STEP_CODE_SUFFIX = " (step code)"
# The step code of a protocol: every Python file of Attest its pytest process loads besides the application under
# test. Its own folder's *.py files, plus the entries below ("features/" is every *.py file under features/ outside
# the other protocols' folders: the shared conftest, steps and support helpers). validation/capture.py, the runner's
# recorder, is loaded into every run (-p validation.capture), so it is part of every protocol's step code.
STEP_CODE = {
    **dict.fromkeys(("IQ", "OQ", "PQ"), (
        "features/", "validation/bdd.py", "validation/capture.py", "testkit/__init__.py", "testkit/plugin.py",
        "core/testing/__init__.py", "core/testing/databases.py", "core/testing/pages.py", "core/testing/tamper.py")),
    "CANARY": ("validation/bdd.py", "validation/capture.py"),
}
PERFORMED = "Performed without error."


def _require(actor: User | None, permission: str, action: str) -> None:
    if actor is None or not actor.active or not actor.can(permission):
        raise NotPermitted(f"{action} needs the permission “{PERMISSIONS[permission].label}” ({permission}).")


def _protocol(protocol: str) -> str:
    code = (protocol or "").strip().upper()
    if code not in PROTOCOLS:
        raise ValidationError("protocol", f"Protocol must be one of: {', '.join(PROTOCOLS)}.")
    return code


# --- protocol files and their approved versions ---------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_dir(package: str) -> Path:
    """The folder of an installed package, found through the package itself."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidTransition(f"The package {package} is not installed with Attest.")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _installed(recorded: str) -> Path:
    """The file or folder of a recorded path (`features/iq`, `validation/bdd.py`) in the installed packages."""
    top, _, rest = recorded.partition("/")
    return package_dir(top) / rest if rest else package_dir(top)


def protocol_dir(protocol: str) -> Path:
    folder = PROTOCOL_DIRS[_protocol(protocol)]
    return Path(folder) if Path(folder).is_absolute() else _installed(folder)


def feature_files(protocol: str) -> list[Path]:
    folder = protocol_dir(protocol)
    return sorted(folder.rglob("*.feature")) if folder.is_dir() else []


def _relative(path: Path) -> str:
    """The path as recorded: inside the installed packages (`features/iq/installation.feature`), the same in a checkout
    and in any installation; absolute for a protocol folder elsewhere (a copy, in tests)."""
    path = path.resolve()
    for top in RECORDED_PACKAGES:
        base = package_dir(top)
        if path.is_relative_to(base):
            return f"{top}/{path.relative_to(base).as_posix()}"
    return path.as_posix()


def _python_files(folder: Path, skip: Iterable[Path] = ()) -> list[Path]:
    skip = [s.resolve() for s in skip]
    return [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts
            and not any(p.resolve().is_relative_to(s) for s in skip)]


def step_code_files(protocol: str) -> list[Path]:
    """Every Python file the protocol's pytest process loads from Attest besides the application (STEP_CODE)."""
    protocol = _protocol(protocol)
    own = protocol_dir(protocol)
    files = set(_python_files(own)) if own.is_dir() else set()
    others = [protocol_dir(code) for code in PROTOCOLS if code != protocol]
    for entry in STEP_CODE[protocol]:
        if entry.endswith("/"):
            files.update(_python_files(_installed(entry.rstrip("/")), skip=others))
        else:
            files.add(_installed(entry))
    return sorted({f.resolve() for f in files}, key=_relative)


def step_code_path(protocol: str) -> str:
    """The recorded name of a protocol's step code, e.g. `features/iq (step code)`."""
    folder = PROTOCOL_DIRS[_protocol(protocol)]
    return (_relative(Path(folder)) if Path(folder).is_absolute() else folder) + STEP_CODE_SUFFIX


def step_code_manifest(protocol: str) -> str:
    """What QA approves as the step code: one line per file, `<SHA-256>  <path>` (the format of `sha256sum`), sorted
    by path. Its SHA-256 is the step code's SHA-256."""
    return "".join(f"{sha256_of(path)}  {_relative(path)}\n" for path in step_code_files(protocol))


def step_code_sources(protocol: str) -> list[tuple[str, str]]:
    """(recorded path, text) of each file of the protocol's step code, as installed."""
    return [(_relative(path), path.read_text(encoding="utf-8")) for path in step_code_files(protocol)]


def parse_manifest(text: str) -> dict[str, str]:
    """path -> SHA-256 of a step-code manifest."""
    out = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        if path:
            out[path] = digest
    return out


def manifest_changes(approved: str, current: str) -> list[str]:
    """Each file of the step code added, removed or changed from one manifest to the next (`x.py changed`)."""
    before, after = parse_manifest(approved), parse_manifest(current)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        if path not in before:
            changes.append(f"{path} added")
        elif path not in after:
            changes.append(f"{path} removed")
        elif before[path] != after[path]:
            changes.append(f"{path} changed")
    return changes


FEATURE_FILE = "feature file"
STEP_CODE_KIND = "step code"


@dataclass
class FileState:
    """A protocol feature file or a protocol's step code, as it stands, with its approved version (if any). `text`
    is what QA approves: the feature file's text, or the step code's manifest."""

    protocol: str
    path: str
    sha256: str
    approved: ProtocolVersion | None
    text: str = ""
    kind: str = FEATURE_FILE

    @property
    def state(self) -> str:
        if self.approved is None:
            return "new"
        return "approved" if self.approved.sha256 == self.sha256 else "changed"

    @property
    def state_label(self) -> str:
        return {"new": "Not yet approved", "approved": f"Approved (version {self.approved.version})"
                if self.approved else "", "changed": "Changed since its approved version"}[self.state]

    @property
    def changes(self) -> list[str]:
        """For step code changed since its approved version: each file added, removed or changed."""
        if self.kind != STEP_CODE_KIND or self.state != "changed":
            return []
        return manifest_changes(self.approved.content, self.text)

    @property
    def refusal(self) -> str:
        """Why the protocol cannot run with this entry as it stands, naming what changed in step code."""
        changes = self.changes
        return f"{self.path} ({self.state_label.lower()}{': ' + ', '.join(changes) if changes else ''})"


def approved_version(path: str) -> ProtocolVersion | None:
    return db.session.scalar(sa.select(ProtocolVersion).where(ProtocolVersion.path == path,
                                                              ProtocolVersion.status == APPROVED))


def _current(protocol: str) -> list[tuple[str, str, str]]:
    """(kind, recorded path, text QA approves) for each feature file of the protocol, then its step code (a protocol
    without feature files has no step code to approve)."""
    out = [(FEATURE_FILE, _relative(path), path.read_bytes().decode("utf-8")) for path in feature_files(protocol)]
    if out:
        out.append((STEP_CODE_KIND, step_code_path(protocol), step_code_manifest(protocol)))
    return out


def protocol_files(protocols: Iterable[str] = tuple(PROTOCOLS)) -> list[FileState]:
    out = []
    for protocol in protocols:
        for kind, rel, text in _current(protocol):
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            out.append(FileState(protocol, rel, digest, approved_version(rel), text, kind))
    return out


def approve_files(paths: Iterable[str], *, actor: User, proof: SignerProof, reason: str | None = None,
                  comment: str | None = None) -> list[ProtocolVersion]:
    """QA approves the current text of each named feature file, or the current manifest of a protocol's step code: a
    new protocol version holding that exact text and its SHA-256, signed "Approved"; the version it replaces is
    superseded. An entry already approved as it stands is refused (nothing to approve)."""
    _require(actor, "validation.approve", "Approving a protocol")
    wanted = sorted(set(paths))
    if not wanted:
        raise ValidationError("paths", "Choose at least one feature file or step code to approve.")
    known = {f.path: f for f in protocol_files()}
    versions = []
    default_reason(reason or "Protocol approved")
    for rel in wanted:
        state = known.get(rel)
        if state is None:
            raise ValidationError("paths", f"{rel} is not a protocol feature file or step code.")
        if state.state == "approved":
            raise InvalidTransition(f"{rel} is already approved as it stands (version {state.approved.version}).")
        if state.state == "changed" and not (reason or "").strip():
            raise ValidationError("reason", f"Say why {rel} changed (reason for the new version).")
        again = {path: text for _kind, path, text in _current(state.protocol)}.get(rel)
        if again is None or hashlib.sha256(again.encode("utf-8")).hexdigest() != state.sha256:
            raise InvalidTransition(f"{rel} changed while it was being approved; look at it again.")
        previous = state.approved
        if previous is not None:
            previous.status = SUPERSEDED
        version = ProtocolVersion(protocol=state.protocol, path=rel, version=(previous.version + 1 if previous else 1),
                                  sha256=state.sha256, content=state.text, status=APPROVED, approved_by_id=actor.id,
                                  approved_at=now_utc(), reason=(reason or "").strip() or None)
        db.session.add(version)
        db.session.flush()
        # one ceremony signs every chosen file: the first signature spends the proof, the others use copies of it
        signed_with = SignerProof(proof.user_id, proof.method, proof.at) if versions else proof
        what = "Step code" if state.kind == STEP_CODE_KIND else "Protocol"
        signing.sign(version, signer=actor, proof=signed_with, meaning=sig.APPROVED,
                     comment=comment or f"{what} {rel} approved (SHA-256 {state.sha256[:16]}…)",
                     allowed=(sig.APPROVED,))
        versions.append(version)
    return versions


def check_executable(protocol: str) -> list[FileState]:
    """The protocol's feature files and step code, each matching its approved version; else InvalidTransition naming
    every entry that is new or changed (and, for step code, each file that changed)."""
    files = protocol_files([protocol])
    if not files:
        raise InvalidTransition(f"Protocol {protocol} has no feature files in {PROTOCOL_DIRS[protocol]}.")
    bad = [f for f in files if f.state != "approved"]
    if bad:
        listed = "; ".join(f.refusal for f in bad)
        raise InvalidTransition(f"Protocol {protocol} cannot run: only approved feature files and step code may be "
                                f"executed, and {len(bad)} are not: {listed}. QA approves the new version under "
                                f"Validation → Protocols.")
    return files


# --- runs ------------------------------------------------------------------------------------------------------------


def create_run(protocol: str, *, executor: User) -> ValidationRun:
    """Queue a run of `protocol` by `executor` (validation.execute), recording the files and the approved versions
    they match. Refused whole when a file is new or changed."""
    protocol = _protocol(protocol)
    _require(executor, "validation.execute", "Executing a validation protocol")
    files = check_executable(protocol)
    default_reason(f"Validation run of {protocol} started")
    run = ValidationRun(protocol=protocol, status=QUEUED, executor_id=executor.id, created_at=now_utc())
    run.files = [RunFile(path=f.path, sha256=f.sha256, protocol_version_id=f.approved.id) for f in files]
    db.session.add(run)
    db.session.flush()
    return run


def _scratch(url: str | None) -> tuple[str, str]:
    """(value for ATTEST_TEST_DATABASE_URL, printable description) of the scratch database."""
    if not url:
        return "", "SQLite (temporary file)"
    if not url.startswith("postgresql"):
        raise ValidationError("VALIDATION_DATABASE_URL", "ATTEST_VALIDATION_DATABASE_URL must name a PostgreSQL "
                                                         "server (the run creates and drops its own database).")
    production = current_app.config.get("SQLALCHEMY_DATABASE_URI") or ""
    if make_url(url).render_as_string(hide_password=True) == make_url(production).render_as_string(
            hide_password=True) if production.startswith("postgresql") else False:
        raise ValidationError("VALIDATION_DATABASE_URL", "The scratch database server URL must not be the "
                                                         "production database.")
    return url, f"PostgreSQL at {make_url(url).host}:{make_url(url).port or 5432} (database created for the run)"


def _database_version(url: str) -> str:
    if not url:
        import sqlite3

        return f"sqlite {sqlite3.sqlite_version}"
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            return f"postgresql {conn.exec_driver_sql('SHOW server_version').scalar()}"
    finally:
        engine.dispose()


def _build_commit() -> str | None:
    """The source commit the installed build was made from, when the installation states it (ATTEST_BUILD_COMMIT);
    nothing is asked of git: an installation has no repository."""
    return (os.environ.get("ATTEST_BUILD_COMMIT") or "").strip()[:64] or None


def fingerprint(run: ValidationRun, scratch_url: str) -> dict[str, Any]:
    """What was executed where: application version (and build commit when stated) and the folder its packages were
    loaded from, Python and every installed package, the scratch database's dialect and version, the operating
    system, the SHA-256 of every feature file and of the step code, and each step-code file's SHA-256."""
    try:
        version = metadata.version("attest")
    except metadata.PackageNotFoundError:
        version = "unknown"
    packages = sorted({(d.metadata["Name"] or "?").lower(): d.version for d in metadata.distributions()}.items())
    step_code = {}
    for f in run.files:
        if f.path.endswith(STEP_CODE_SUFFIX):
            step_code[f.path] = {"sha256": f.sha256, "files": parse_manifest(f.protocol_version.content)}
    return {
        "application": {"name": "attest", "version": version, "commit": _build_commit(),
                        "installed_at": str(package_dir("validation").parent)},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": dict(packages),
        "database": {"scratch": _database_version(scratch_url)},
        "os": {"platform": platform.platform(), "machine": platform.machine(), "node": platform.node()},
        "files": {f.path: f.sha256 for f in run.files},
        "step_code": step_code,
    }


@dataclass
class _Live:
    """The scenario being stored while the subprocess runs."""

    scenario_id: int | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    position: int = 0


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _expected(step: dict[str, Any]) -> str:
    """A Then step states the expected result; Given and When steps are expected to complete without error."""
    return step["text"] if step.get("type") == "then" else PERFORMED


class _Store:
    def __init__(self, run_id: int, echo: Callable[[str], None] | None) -> None:
        self.run_id = run_id
        self.echo = echo or (lambda _line: None)
        self.live: dict[str, _Live] = {}
        self.position = 0

    def apply(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        with transaction(reason="Validation run results recorded"):
            for event in events:
                getattr(self, f"_on_{event['event']}")(event)

    def _on_scenario(self, event: dict[str, Any]) -> None:
        self.position += 1
        tags = " ".join(t for t in event.get("tags", []))
        scenario = ScenarioResult(run_id=self.run_id, position=self.position, feature_path=event["feature_path"],
                                  feature_name=event["feature"][:300], name=event["scenario"][:500], tags=tags[:1000],
                                  outcome=RUNNING, started_at=_at(event.get("start")))
        db.session.add(scenario)
        db.session.flush()
        self.live[event["nodeid"]] = _Live(scenario.id, event["steps"])
        self.echo(f"  {event['feature_path']}: {event['scenario']}")

    def _on_step(self, event: dict[str, Any]) -> None:
        live = self.live[event["nodeid"]]
        index = event["index"]
        step = live.steps[index]
        evidence = event.get("records") or []
        db.session.add(StepResult(
            run_id=self.run_id, scenario_id=live.scenario_id, position=index + 1, keyword=step["keyword"][:16],
            text=step["text"], expected=_expected(step), actual=(event.get("actual") or None),
            outcome=event["outcome"], evidence=json.dumps(evidence) if evidence else None, error=event.get("error"),
            started_at=_at(event.get("start")), finished_at=_at(event.get("end"))))
        live.done.add(index)
        mark = {"passed": "ok", "failed": "FAILED", "undefined": "UNDEFINED"}.get(event["outcome"], event["outcome"])
        self.echo(f"    [{mark}] {step['keyword']} {step['text']}")

    def _on_scenario_end(self, event: dict[str, Any]) -> None:
        live = self.live.pop(event["nodeid"])
        scenario = db.session.get(ScenarioResult, live.scenario_id)
        for index, step in enumerate(live.steps):
            if index not in live.done:
                db.session.add(StepResult(run_id=self.run_id, scenario_id=scenario.id, position=index + 1,
                                          keyword=step["keyword"][:16], text=step["text"], expected=_expected(step),
                                          outcome=NOT_RUN, actual=None,
                                          error=None if event["outcome"] == "passed" else
                                          "Not executed: an earlier step or the scenario set-up failed."))
        outcome = event["outcome"]
        scenario.outcome = PASSED if outcome == "passed" else (NOT_RUN if outcome == "skipped" else FAILED)
        scenario.error = event.get("error")
        scenario.finished_at = _at(event.get("end"))


def _read_new(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    if not path.exists():
        return [], offset
    with path.open("r", encoding="utf-8") as fh:
        fh.seek(offset)
        data = fh.read()
    complete, _, _rest = data.rpartition("\n")
    if not complete:
        return [], offset
    lines = [json.loads(line) for line in complete.split("\n") if line.strip()]
    return lines, offset + len(complete.encode("utf-8")) + 1


def _start(run: ValidationRun) -> None:
    """Queued -> Running: the files must still be the approved ones (they may have changed since the run was
    queued); the scratch database and the environment fingerprint are recorded."""
    current = {f.path: f.sha256 for f in check_executable(run.protocol)}
    if current != {f.path: f.sha256 for f in run.files}:
        raise InvalidTransition(f"The feature files or step code of {run.protocol} changed since {run.audit_title()} "
                                f"was queued; start a new run.")
    scratch_url, scratch_label = _scratch(current_app.config.get("ATTEST_VALIDATION_DATABASE_URL"))
    LIFECYCLE.move(run, RUNNING)
    run.started_at = now_utc()
    run.database = scratch_label[:200]
    data = fingerprint(run, scratch_url)
    run.fingerprint = json.dumps(data, sort_keys=True, indent=1)
    run.fingerprint_sha256 = hashlib.sha256(run.fingerprint.encode("utf-8")).hexdigest()
    run.app_version = data["application"]["version"]
    run.commit = data["application"]["commit"]


PYTEST_INI = """[pytest]
# written by the protocol runner for one run: the protocols never read a checkout's configuration
console_output_style = classic
filterwarnings =
    error::sqlalchemy.exc.SAWarning
    error::DeprecationWarning:wtforms
"""


def pytest_command(protocol: str, scratch_url: str, tmp: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a protocol's pytest process. Everything it needs is named here, so that it runs
    the same from a wheel's site-packages as from a checkout: a configuration file of the run's own, the installed
    packages' folder as root (recorded paths are relative to it), strict markers, only the plugins named (pytest-bdd,
    the runner's recorder), no cache, no bytecode written into the installation, temporary files in `tmp`."""
    ini = tmp / "pytest.ini"
    ini.write_text(PYTEST_INI, encoding="utf-8")
    root = package_dir("validation").parent
    command = [sys.executable, "-m", "pytest", str(protocol_dir(protocol)), "-c", str(ini), f"--rootdir={root}",
               f"--confcutdir={root}", "--strict-markers", "-p", "no:cacheprovider", "-p", "pytest_bdd.plugin",
               "-p", "validation.capture", f"--validation-out={out}", f"--basetemp={tmp / 'pytest'}", "-q",
               "--no-header", "-ra"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    # OQ and PQ steps work on the scratch database only (testkit.plugin's `app`); the installation's own database
    # URL and instance folder are passed for the IQ's read-only checks of the installation (schema, configuration)
    env.update({"ATTEST_TEST_DATABASE_URL": scratch_url, "ATTEST_VALIDATION_INSTALLED": "1",
                "ATTEST_DATABASE_URL": current_app.config["SQLALCHEMY_DATABASE_URI"],
                "ATTEST_INSTANCE_PATH": current_app.instance_path, "PYTHONDONTWRITEBYTECODE": "1",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    return command, env


def execute(run_id: int, *, echo: Callable[[str], None] | None = None, timeout_s: int = 3600) -> ValidationRun:
    """Execute a queued run: pytest-bdd on the protocol's folder in a separate process against a scratch database,
    storing scenarios and steps as they complete (each batch its own unit of work, attributed to the executor).
    Then the counts, the result and a test incident (draft deviation) for each failed step."""
    run = db.session.get(ValidationRun, run_id)
    if run is None:
        raise ValidationError("run", f"There is no validation run {run_id}.")
    executor = run.executor
    with audit.acting_as(executor):
        try:
            with transaction(reason="Validation run started"):
                run = db.session.get(ValidationRun, run_id)
                if run.status != QUEUED:
                    raise InvalidTransition(f"{run.audit_title()} is {run.status_label.lower()}; only a queued run "
                                            f"is executed.")
                _start(run)
        except (InvalidTransition, ValidationError) as exc:
            # a queued run that cannot start ends as a runner error with the reason (never queued for ever)
            db.session.rollback()
            with transaction(reason="Validation run could not start"):
                run = db.session.get(ValidationRun, run_id)
                if run.status == QUEUED:
                    LIFECYCLE.move(run, ERROR)
                    run.result, run.finished_at, run.error = FAILED, now_utc(), exc.message
            raise
        scratch_url = current_app.config.get("ATTEST_VALIDATION_DATABASE_URL") or ""
        scratch_label = run.database
        echo = echo or (lambda _line: None)
        echo(f"run {run_id}: protocol {run.protocol}, {len(run.files)} feature file(s), scratch database "
             f"{scratch_label}")
        store = _Store(run_id, echo)
        error = None
        with tempfile.TemporaryDirectory(prefix="attest-validation-") as tmp:
            out = Path(tmp) / "events.jsonl"
            command, env = pytest_command(run.protocol, scratch_url, Path(tmp), out)
            log = (Path(tmp) / "pytest.log").open("w+", encoding="utf-8")
            process = subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
            offset, started = 0, time.monotonic()
            try:
                while True:
                    finished = process.poll() is not None
                    events, offset = _read_new(out, offset)
                    store.apply(events)
                    if finished:
                        break
                    if time.monotonic() - started > timeout_s:
                        process.kill()
                        error = f"The run exceeded {timeout_s} s and was stopped."
                        break
                    time.sleep(0.3)
            finally:
                if process.poll() is None:
                    process.kill()
            log.seek(0)
            output = log.read()
            log.close()
            code = process.returncode
            if error is None and code not in (0, 1):  # 1: tests failed (recorded per step); others: no result
                error = f"pytest ended with exit code {code}:\n{output[-3000:]}"
        try:
            return _finish(run_id, error, echo)
        except Exception as exc:  # never leave a run "running": record why it could not be finished
            db.session.rollback()
            with transaction(reason="Validation run could not be finished"):
                run = db.session.get(ValidationRun, run_id)
                if run.status in (QUEUED, RUNNING):
                    LIFECYCLE.move(run, ERROR)
                run.result, run.finished_at = FAILED, now_utc()
                run.error = f"Recording the results failed: {exc!r}"[:4000]
            raise


def _finish(run_id: int, error: str | None, echo: Callable[[str], None]) -> ValidationRun:
    with transaction(reason="Validation run finished"):
        run = db.session.get(ValidationRun, run_id)
        lock_row(run)
        if run.status != RUNNING:  # abandoned meanwhile: the results stay, the status says why it is not complete
            echo(f"run {run.id} was {run.status_label.lower()} before it finished: {run.error or ''}")
            return run
        steps = list(db.session.scalars(sa.select(StepResult).where(StepResult.run_id == run_id)
                                        .order_by(StepResult.id)))
        scenarios = list(db.session.scalars(sa.select(ScenarioResult).where(ScenarioResult.run_id == run_id)))
        for scenario in scenarios:
            if scenario.outcome == RUNNING:  # the process stopped inside it
                scenario.outcome = FAILED
                scenario.error = scenario.error or "The run stopped before this scenario finished."
        run.scenarios = len(scenarios)
        run.steps = len(steps)
        run.passed = sum(1 for s in steps if s.outcome == PASSED)
        run.failed = sum(1 for s in steps if s.outcome in (FAILED, UNDEFINED))
        run.not_run = sum(1 for s in steps if s.outcome == NOT_RUN)
        failed_scenarios = [s for s in scenarios if s.outcome == FAILED]
        run.finished_at = now_utc()
        if error is not None or not scenarios:
            LIFECYCLE.move(run, ERROR)
            run.error = error or "No scenario was executed (no feature file collected)."
            run.result = FAILED
        else:
            LIFECYCLE.move(run, COMPLETED)
            run.result = FAILED if (run.failed or failed_scenarios) else PASSED
        db.session.flush()
        failing = [s for s in steps if s.outcome in (FAILED, UNDEFINED)]
        # a scenario that failed outside its steps (set-up or tear-down) gets its incident on its first step
        for scenario in failed_scenarios:
            own = [s for s in steps if s.scenario_id == scenario.id]
            if own and not any(s in failing for s in own):
                first = own[0]
                first.error = first.error or scenario.error
                failing.append(first)
        for step in failing:
            incident = _raise_incident(run, step)
            step.incident_id = incident.id if incident is not None else None
        echo(f"protocol={run.protocol} run={run.id} scenarios={run.scenarios} steps={run.steps} "
             f"passed={run.passed} failed={run.failed}")
    return run


def _note(run: ValidationRun, note: str) -> None:
    run.error = f"{run.error}\n{note}" if run.error else note


def _raise_incident(run: ValidationRun, step: StepResult):
    """A test incident: a deviation (Open) reported by the executor, who owns its investigation (validation engineers
    hold quality.manage), describing the failed step; the step links to it."""
    from qms.deviations import services as deviations

    executor = run.executor
    scenario = db.session.get(ScenarioResult, step.scenario_id)
    site_id, department_id = executor.site_id, executor.department_id
    if site_id is None or department_id is None:
        from core.org import Department

        department = db.session.scalar(sa.select(Department).order_by(Department.id).limit(1))
        if department is None:
            _note(run, f"No test incident raised for step {step.id}: no site or department is set up.")
            return None
        site_id, department_id = department.site_id, department.id
    now = now_utc()
    occurred = min(step.finished_at or step.started_at or now, now)
    description = (f"Test incident raised by {run.audit_title()}.\n\nFeature: {scenario.feature_path} — "
                   f"{scenario.feature_name}\nScenario: {scenario.name} (requirements: {scenario.tags or 'none'})\n"
                   f"Step {step.position}: {step.keyword} {step.text}\nExpected: {step.expected}\n"
                   f"Actual: {step.actual or '—'}\nOutcome: {step.outcome}\nError: {step.error or '—'}")
    if not executor.can("quality.manage"):
        _note(run, f"No test incident raised for step {step.id}: {executor.full_name} cannot report deviations.")
        return None
    return deviations.report_deviation(
        actor=executor, title=f"Test incident: run {run.id} ({run.protocol}), {scenario.name}"[:300],
        occurred_at=occurred, discovered_at=now, site_id=site_id, department_id=department_id,
        area=f"Validation run {run.id} ({run.protocol})", description=description)


def abandon(run: ValidationRun, *, actor: User | None, reason: str) -> ValidationRun:
    """End a queued or running run whose process is gone (e.g. the server restarted): it becomes a runner error with
    the reason. The executor or QA may do it; the command line (`flask validation abandon`) too. The steps recorded so
    far stay; an executing process that later finishes leaves the status as it is."""
    LIFECYCLE.apply(run, "abandon", actor=actor, text=reason)
    return run


# --- signatures: the run's lifecycle ---------------------------------------------------------------------------------
# The signed steps (and abandoning a run) are declared in LIFECYCLE: it locks the run, checks permission, state, the
# executor rules and the page's version, signs and moves the status. The runner's own moves (queued -> running ->
# completed or error) are made by `execute()` and documented as the system's.


def sign_executed(run: ValidationRun, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
                  comment: str | None = None) -> ValidationRun:
    """The executor signs "Executed": these are the results they obtained."""
    LIFECYCLE.apply(run, "executed", actor=actor, proof=proof, expected_version=expected_row_version, text=comment)
    return run


def review(run: ValidationRun, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           comment: str | None = None) -> ValidationRun:
    """QA signs "Reviewed": the evidence supports each step's outcome."""
    LIFECYCLE.apply(run, "review", actor=actor, proof=proof, expected_version=expected_row_version, text=comment)
    return run


def approve(run: ValidationRun, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
            comment: str | None = None) -> ValidationRun:
    """QA signs "Approved": the executed protocol is accepted (a failed run needs a comment)."""
    LIFECYCLE.apply(run, "approve", actor=actor, proof=proof, expected_version=expected_row_version, text=comment)
    return run


def _check_failed_run_comment(act: Act) -> None:
    run = act.record
    if run.result == FAILED and not act.text:
        raise ValidationError("comment", f"{run.audit_title()} has failed steps: approving it needs a comment "
                                         f"(e.g. the test incidents and their outcome).")


def _abandoned(act: Act) -> None:
    run = act.record
    who = act.actor.full_name if act.actor is not None else "the command line"
    run.result, run.finished_at = FAILED, now_utc()
    _note(run, f"Abandoned by {who}: {act.text}"[:4000])


EXECUTOR = only("executor_id", "the executor only",
                lambda run: f"Only the executor of {run.audit_title()} ({run.executor.full_name}) signs it as "
                            f"executed.")
NOT_EXECUTOR = never("executor_id", "not the executor (segregation of duties)",
                     lambda run: f"Segregation of duties: the executor of {run.audit_title()} cannot also review or "
                                 f"approve it.")
EXECUTOR_OR_QA = Rule("the executor or QA",
                      lambda run, user: user.id == run.executor_id or user.can("validation.approve"),
                      lambda run, _user: f"Abandoning another person's validation run needs the permission "
                                         f"“{PERMISSIONS['validation.approve'].label}” (validation.approve).")

LIFECYCLE = Lifecycle(
    "validation_run", title="Validation run", model=ValidationRun, noun="run", labels=RUN_STATUS_LABELS,
    initial=QUEUED, require_version=False,
    stale="{title} changed since you opened it; look at it again before signing.",
    signed_done="Signed: {meaning}. {title} is now: {status}.",
    summary=lambda run: f"{run.audit_title()} — {run.status_label}, result {run.result or 'none'}: {run.scenarios} "
                        f"scenario(s), {run.steps} step(s), {run.passed} passed, {run.failed} failed, "
                        f"{run.not_run} not run",
    describe="""Queued by a validation engineer (its executor) and executed by the runner in a process of its own
    (`flask validation execute`). The executor signs the completed run "Executed"; QA, never the executor, signs it
    "Reviewed" and then "Approved" (a run with failed steps needs a comment). A queued or running run whose process is
    gone is abandoned by its executor or QA (or the command line) with a reason. See docs/validation.md.""",
    system=[SystemTransition((QUEUED,), RUNNING, "the runner starts it"),
            SystemTransition((RUNNING,), COMPLETED, "every scenario executed"),
            SystemTransition((QUEUED, RUNNING), ERROR, "the runner could not start or finish it")],
    transitions=[
        Transition("executed", "Sign as executed", (COMPLETED,), EXECUTED, "validation.execute", sig.EXECUTED,
                   text=comment(), rules=(EXECUTOR,), task="Signing a validation run as executed",
                   state_refusal="{title} is {status_lower}; only a completed run is signed as executed.",
                   path="sign-executed", audit_reason="Run signed as executed"),
        Transition("review", "Review (sign)", (EXECUTED,), REVIEWED, "validation.approve", sig.REVIEWED,
                   text=comment(), rules=(NOT_EXECUTOR,), task="Reviewing a validation run",
                   confirm="Sign as reviewed",
                   state_refusal="{title} is {status_lower}; reviewing a validation run needs it executed.",
                   path="sign-review", audit_reason="Run reviewed by QA"),
        Transition("approve", "Approve (sign)", (REVIEWED,), RUN_APPROVED, "validation.approve", sig.APPROVED,
                   text=comment(help=lambda run: "Required: this run has failed steps. Say how its test incidents "
                                                 "were resolved." if run.result == FAILED else None),
                   rules=(NOT_EXECUTOR,), task="Approving a validation run", confirm="Sign and approve",
                   style="success",
                   state_refusal="{title} is {status_lower}; approving a validation run needs it reviewed.",
                   path="sign-approve", check=_check_failed_run_comment, audit_reason="Run approved by QA"),
        Transition("abandon", "Abandon the run", (QUEUED, RUNNING), ERROR, ("validation.execute", "validation.approve"),
                   text=justification("Reason for abandoning the run", what="Reason for abandoning the run",
                                      missing="Say why the run is abandoned (e.g. the server restarted during the "
                                              "run)."),
                   rules=(EXECUTOR_OR_QA,), task="Abandoning a validation run", page=False,
                   endpoint="abandon_run", style="outline-danger", system_may=True, needs_version=False,
                   state_refusal="{title} is {status_lower}; only a queued or running run can be abandoned.",
                   effect=_abandoned, audit_reason=lambda act: f"Validation run abandoned: {act.text}"[:2000],
                   done=lambda act: f"Run {act.record.id} abandoned: it is recorded as a runner error with your "
                                    f"reason."),
    ])


# --- traceability ----------------------------------------------------------------------------------------------------


@dataclass
class TracedScenario:
    protocol: str
    feature_path: str
    feature_name: str
    name: str
    latest: ScenarioResult | None = None
    latest_run: ValidationRun | None = None


@dataclass
class TraceRow:
    requirement: dict[str, Any]
    scenarios: list[TracedScenario]

    @property
    def flag(self) -> str | None:
        """Why an inspector should look at this requirement, or None when its latest results all passed."""
        if not self.scenarios:
            return "No scenario verifies this requirement"
        if any(s.latest is not None and s.latest.outcome != PASSED for s in self.scenarios):
            return "Latest result failed"
        if any(s.latest is None for s in self.scenarios):
            return "Not yet executed"
        return None

    @property
    def status(self) -> str:
        if not self.scenarios:
            return "not covered"
        return {None: "passed", "Latest result failed": "failed", "Not yet executed": "not executed"}[self.flag]


def declared_scenarios(protocols: Iterable[str] = ("IQ", "OQ", "PQ")) -> list[tuple[TracedScenario, set[str]]]:
    """Every scenario of the protocols' feature files with its tags (feature tags included), as the files stand."""
    from pytest_bdd.parser import FeatureParser

    out = []
    for protocol in protocols:
        for path in feature_files(protocol):
            feature = FeatureParser(str(path.parent), path.name).parse()
            for template in feature.scenarios.values():
                out.append((TracedScenario(protocol, _relative(path), feature.name, template.name),
                            set(template.tags) | set(feature.tags)))
    return out


def trace_matrix() -> list[TraceRow]:
    """Each requirement of validation/urs.yaml -> the scenarios tagged with its id -> the latest executed result of
    each (from the newest finished run that executed it)."""
    from validation.bdd import load_urs

    declared = declared_scenarios()
    finished = [COMPLETED, EXECUTED, REVIEWED, RUN_APPROVED]
    latest: dict[tuple[str, str], tuple[ScenarioResult, ValidationRun]] = {}
    rows = db.session.execute(
        sa.select(ScenarioResult, ValidationRun).join(ValidationRun, ValidationRun.id == ScenarioResult.run_id)
        .where(ValidationRun.status.in_(finished)).order_by(ValidationRun.id, ScenarioResult.position)).all()
    for result, run in rows:
        latest[(result.feature_path, result.name)] = (result, run)
    by_requirement: dict[str, list[TracedScenario]] = {}
    for scenario, tags in declared:
        found = latest.get((scenario.feature_path, scenario.name))
        if found:
            scenario.latest, scenario.latest_run = found
        for tag in tags:
            by_requirement.setdefault(tag, []).append(scenario)
    return [TraceRow(req, by_requirement.get(req["id"], [])) for req in load_urs()]


TRACE_COLUMNS = ["Requirement", "Title", "Area", "Risk", "Reference", "Protocol", "Feature file", "Scenario",
                 "Latest result", "Run", "Run status", "Executed at", "Flag"]


def trace_table(rows: Iterable[TraceRow]) -> list[list[str]]:
    """The matrix as rows of text: one per requirement and scenario (a requirement without a scenario has one row)."""
    out = []
    for row in rows:
        req = row.requirement
        head = [req["id"], req["title"], req.get("area", ""), req.get("risk", ""), req.get("reference", "")]
        if not row.scenarios:
            out.append(head + ["", "", "", "", "", "", "", row.flag or ""])
        for s in row.scenarios:
            run = s.latest_run
            out.append(head + [s.protocol, s.feature_path, s.name, s.latest.outcome if s.latest else "not executed",
                               str(run.id) if run else "", run.status_label if run else "",
                               run.started_at.isoformat() if run and run.started_at else "", row.flag or ""])
    return out


def write_trace_csv(rows: Iterable[TraceRow], stream) -> None:
    import csv

    writer = csv.writer(stream)
    writer.writerow(TRACE_COLUMNS)
    writer.writerows(trace_table(rows))
