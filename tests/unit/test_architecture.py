"""House rules that keep one transaction per request and the package layering honest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "signatures", "training", "lms", "qms", "validation")
# a package may import only packages below it in this order (core < signatures < training < {lms, qms} <
# validation); lms and qms, side by side, never import each other; validation sits on top of qms because a failed
# protocol step raises a test incident, which is a qms deviation. pyproject.toml states the same rule for
# import-linter (`lint-imports`, run by `make test`).
ORDER = {"core": 0, "signatures": 1, "training": 2, "lms": 3, "qms": 3, "validation": 4}


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


def test_no_table_refers_to_a_table_of_a_package_above_it():
    """Foreign keys point downward only: no training_* table refers to a qms_* or lms_* table (training owns what is
    trained; qms and lms publish their versions into it), no table of a lower package to a higher one's."""
    import app  # noqa: F401  (every model module imported, the version tables built)
    from core.db import db

    prefixes = {"core": "core", "audit": "core", "sig": "signatures", "training": "training", "lms": "lms",
                "qms": "qms", "validation": "validation"}

    def package(table: str) -> str | None:
        return next((pkg for prefix, pkg in prefixes.items() if table.startswith(prefix + "_")), None)

    upward = []
    for table in db.metadata.tables.values():
        own = package(table.name)
        for fk in table.foreign_keys:
            target = package(fk.column.table.name)
            if own and target and ORDER[target] > ORDER[own]:
                upward.append(f"{table.name}.{fk.parent.name} -> {fk.column.table.name}")
    assert upward == []
    training = [t for t in db.metadata.tables.values() if t.name.startswith("training_")]
    assert training and all(not fk.column.table.name.startswith(("qms_", "lms_"))
                            for t in training for fk in t.foreign_keys)
