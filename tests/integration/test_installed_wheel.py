"""The validation package runs from an installed wheel: the wheel built from this checkout is installed into a fresh
virtual environment outside it, an installation is set up from there as an administrator would (migrate, create the
people), QA approves the IQ protocol and its step code, and the validation engineer executes the IQ with
`flask validation run IQ`. Every step passes, and the run's fingerprint names the wheel's version, the folder the
packages were loaded from and the SHA-256 of the approved step code.

The fresh environment gets the third-party dependencies of this one through a folder of links named in a .pth file
(no download, a few seconds): every entry of this environment's site-packages except Attest's own (its editable
finder and metadata), so only the code installed from the wheel can serve `import app`. In the PostgreSQL pass of
`make test` the installation's database and the IQ's scratch database are on the PostgreSQL server; in the SQLite
pass both are SQLite files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from core.testing.databases import postgres_database
from testkit.plugin import PASSWORD, is_postgres

ROOT = Path(__file__).resolve().parents[2]
# what the build reads besides the packages: the checkout's own tools, tests and state stay out of the copy
NOT_BUILT = (".git", ".venv", "build", "*.egg-info", "__pycache__", "instance", "tests", "bench", "docs", ".ci",
             ".pytest_cache", ".ruff_cache", "test-artifacts", "test-results")


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300,
         check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built offline from a copy (nothing is written into the checkout, and no file left
    over in a build folder can end up in it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_BUILT))
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "--wheel-dir", str(tmp / "dist")], cwd=tmp)
    [built] = (tmp / "dist").glob("attest-*.whl")
    return built


def test_the_wheel_holds_what_an_installation_needs_to_migrate_and_run_its_protocols(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {"app.py", "migrations/env.py", "migrations/alembic.ini", "migrations/script.py.mako",
              "migrations/versions/0001_platform_foundation.py", "features/conftest.py", "features/iq/test_iq.py",
              "features/iq/installation.feature", "features/steps/installation.py", "features/support/documents.py",
              "features/support/inspection.py", "validation/urs.yaml", "validation/bdd.py", "validation/capture.py",
              "validation/canaries/canary.feature", "validation/templates/validation/protocols.html",
              "core/templates/core/base.html", "testkit/plugin.py", "signatures/manifest.xsd"}
    assert needed - names == set()
    versions = {n for n in names if n.startswith("migrations/versions/") and n.endswith(".py")}
    assert len(versions) == len(list((ROOT / "migrations" / "versions").glob("*.py")))
    features = {n for n in names if n.startswith("features/") and n.endswith((".py", ".feature"))}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "features").rglob("*")
               if p.suffix in (".py", ".feature") and "__pycache__" not in p.parts}
    assert features == shipped
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)


@pytest.fixture
def fresh_venv(tmp_path) -> tuple[Path, Path]:
    """(python, site-packages) of a new virtual environment outside the checkout, whose only link to this one is a
    folder of links to its third-party packages."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    dependencies = tmp_path / "dependencies"
    dependencies.mkdir()
    for entry in ours.iterdir():
        name = entry.name
        if name.startswith(("attest-", "__editable__", "__pycache__")) or name.endswith(".pth"):
            continue
        (dependencies / name).symlink_to(entry)
    (site / "dependencies.pth").write_text(f"{dependencies}\n")
    return python, site


def test_the_iq_runs_from_the_installed_wheel_outside_the_checkout(wheel, fresh_venv, tmp_path):
    python, site = fresh_venv
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
          str(wheel)], cwd=tmp_path)
    work = tmp_path / "installation"
    work.mkdir()
    with ExitStack() as stack:
        if is_postgres():
            server = os.environ["ATTEST_TEST_DATABASE_URL"]
            database, scratch = stack.enter_context(postgres_database(server, prefix="attest_wheel")), server
        else:
            database, scratch = f"sqlite:///{work / 'attest.db'}", ""
        env = {"PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "PYTHONNOUSERSITE": "1", "ATTEST_DATABASE_URL": database, "ATTEST_VALIDATION_DATABASE_URL": scratch}

        def flask(*args: str, check: bool = True) -> subprocess.CompletedProcess:
            return _run([str(python), "-m", "flask", "--app", "app", *args], cwd=work, env=env, check=check)

        def script(text: str) -> dict:
            path = tmp_path / "script.py"
            path.write_text(text)
            return json.loads(_run([str(python), str(path)], cwd=work, env=env).stdout.strip().splitlines()[-1])

        # the code that answers is the wheel's, in the fresh environment's site-packages
        origin = script("""
import json, sys
from importlib import metadata
import app, core, features, validation, migrations
print(json.dumps({"modules": [m.__file__ for m in (app, core, features, validation)] + list(migrations.__path__),
                  "direct_url": json.loads(metadata.distribution("attest").read_text("direct_url.json")),
                  "path": sys.path}))
""")
        assert all(Path(f).is_relative_to(site) for f in origin["modules"]), origin["modules"]
        assert origin["direct_url"]["url"].endswith(wheel.name) and "archive_info" in origin["direct_url"]
        assert not any(p and Path(p).resolve().is_relative_to(ROOT) for p in origin["path"]), origin["path"]

        # the administrator migrates the database and creates the people; QA approves the IQ and its step code
        flask("db", "upgrade")
        for username, role, name in (("quinn.qa", "qa_approver", "Quinn QA"),
                                     ("vera.val", "validation_engineer", "Vera Validation")):
            flask("users", "create", username, "--full-name", name, "--email", f"{username}@example.com",
                  "--roles", role, "--password", PASSWORD)
        refused = flask("validation", "run", "IQ", "--executor", "vera.val", check=False)
        assert refused.returncode != 0 and "features/iq (step code) (not yet approved)" in refused.stderr
        approved = script(f"""
import json, time
import pyotp
from app import create_app
from core import audit
from core.auth import services as accounts
from core.db import transaction
from signatures.services import authenticate
from validation import services

app = create_app()
with app.app_context():
    qa = accounts.get_by_username("quinn.qa")
    with audit.acting_as(qa), transaction():  # the authenticator app enrolled as on the enrolment page
        secret = accounts.begin_totp_enrollment(qa)
        accounts.confirm_totp_enrollment(qa, pyotp.TOTP(secret).now())
    with transaction():  # the signing ceremony: password and the next code of the authenticator
        proof = authenticate(qa, password={PASSWORD!r}, totp_code=pyotp.TOTP(secret).at(time.time() + 30))
    assert proof is not None, "QA could not authenticate"
    with audit.acting_as(qa), transaction():
        versions = services.approve_files([f.path for f in services.protocol_files(["IQ"])], actor=qa, proof=proof)
    print(json.dumps({{v.path: v.sha256 for v in versions}}))
""")
        assert "features/iq/installation.feature" in approved and "features/iq (step code)" in approved
        listing = flask("validation", "protocols").stdout
        assert "features/iq (step code)" in listing and "Approved (version 1)" in listing

        # the validation engineer executes the IQ on the installation
        executed = flask("validation", "run", "IQ", "--executor", "vera.val", check=False)
        summary = executed.stdout.strip().splitlines()[-1]
        assert executed.returncode == 0, f"{executed.stdout}\n{executed.stderr}"
        recorded = script("""
import json
import sqlalchemy as sa
from app import create_app
from core.db import db
from validation.models import StepResult, ValidationRun

with create_app().app_context():
    run = db.session.scalar(sa.select(ValidationRun))
    steps = db.session.scalars(sa.select(StepResult).where(StepResult.run_id == run.id)).all()
    print(json.dumps({"status": run.status, "result": run.result, "steps": run.steps, "passed": run.passed,
                      "scenarios": run.scenarios, "fingerprint": run.fingerprint_data,
                      "evidence": [s.evidence for s in steps], "paths": sorted({s.feature_path for s in
                                                                                 run.scenario_results})}))
""")
    assert summary == (f"protocol=IQ run=1 scenarios={recorded['scenarios']} steps={recorded['steps']} "
                       f"passed={recorded['steps']} failed=0")
    assert (recorded["status"], recorded["result"]) == ("completed", "passed")
    assert recorded["scenarios"] >= 5 and recorded["passed"] == recorded["steps"] > 20
    assert recorded["paths"] == ["features/iq/installation.feature"]
    assert any("metadata of the installed attest distribution" in (e or "") for e in recorded["evidence"]), (
        "the IQ read the declaration from the installed distribution, not from a checkout's pyproject.toml")
    fingerprint = recorded["fingerprint"]
    version = wheel.name.split("-")[1]
    assert fingerprint["application"]["version"] == version and fingerprint["application"]["commit"] is None
    assert fingerprint["application"]["installed_at"] == str(site)
    assert fingerprint["python"]["executable"] == str(python)
    step_code = fingerprint["step_code"]["features/iq (step code)"]
    assert fingerprint["files"]["features/iq (step code)"] == step_code["sha256"] == approved["features/iq (step code)"]
    for path in ("features/support/documents.py", "features/steps/installation.py", "validation/capture.py",
                 "testkit/plugin.py"):
        assert step_code["files"][path] == _sha256(site / path) == _sha256(ROOT / path), path
    # the installation's own files are in its instance folder (the working directory's), none in site-packages
    assert (work / "instance" / "secret_key").is_file()
    assert not (site / "instance").exists() and not list(site.rglob(".pytest_cache"))


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
