"""House rules that keep one transaction per request and the package layering honest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "signatures", "lms", "training", "qms", "validation")
# a package may import only packages below it in this order; validation sits on top of qms because a failed
# protocol step raises a test incident, which is a qms deviation (qms never imports validation)
ORDER = {"core": 0, "signatures": 1, "lms": 2, "training": 3, "qms": 4, "validation": 5}


def _py_files(*roots: str):
    for root in roots:
        yield from (p for p in (ROOT / root).rglob("*.py") if "__pycache__" not in p.parts)


def test_commit_is_called_only_in_core_db():
    offenders = []
    for path in [*_py_files(*PACKAGES), ROOT / "app.py"]:
        if path == ROOT / "core" / "db.py" or "testing" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.commit\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == [], f"commit() outside core/db.py (use core.db.transaction()): {offenders}"


def test_lower_packages_never_import_higher_ones():
    violations = []
    for package in PACKAGES:
        for path in _py_files(package):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in ORDER and top != package and ORDER[top] >= ORDER[package]:
                        violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert violations == [], violations


def test_no_setting_can_switch_auditing_off():
    from core.config import SETTINGS

    names = " ".join(s.name for s in SETTINGS).lower()
    assert "audit" not in names and "version" not in names


def test_protocols_and_shipped_packages_never_import_the_tests():
    """features/ and the packages run from an installed wheel, which holds no tests/: an import of tests there works in
    a checkout and breaks the installation."""
    offenders = []
    for path in [*_py_files("features", *PACKAGES), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(name == "tests" or name.startswith("tests.") for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], f"imports of tests/ outside tests/: {offenders}"
