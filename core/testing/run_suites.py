"""`make test`: the whole suite on SQLite, then again on PostgreSQL when a server is reachable.

ATTEST_TEST_POSTGRES_URL names the server (default: the local PostgreSQL 15 at 127.0.0.1:5432, trust auth, database
`test`). Without a reachable server the PostgreSQL pass is skipped with a message, unless ATTEST_REQUIRE_POSTGRES=1
(set by .ci/run), which makes a missing server a failure. The last line sums both passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_reachable(url: str) -> str | None:
    """None when a connection works, else the reason it does not."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not reachable"
        return str(exc).splitlines()[0]


def run_pass(label: str, env_extra: dict[str, str], args: list[str]) -> tuple[int, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, **env_extra}
        print(f"\n=== {label} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", "pytest", f"--junitxml={junit}", *args], env=env)
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        if junit.exists():
            root = ET.parse(junit).getroot()
            for suite in root.iter("testsuite"):
                tests = int(suite.get("tests", 0))
                failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                skipped = int(suite.get("skipped", 0))
                counts["failed"] += failed
                counts["skipped"] += skipped
                counts["passed"] += tests - failed - skipped
        return code, counts


def main(argv: list[str]) -> int:
    total = {"passed": 0, "failed": 0, "skipped": 0}
    failures = []
    env_sqlite = {"ATTEST_TEST_DATABASE_URL": ""}
    code, counts = run_pass("SQLite", env_sqlite, argv)
    for k in total:
        total[k] += counts[k]
    if code != 0:
        failures.append("SQLite pass")

    pg_url = os.environ.get("ATTEST_TEST_POSTGRES_URL") or DEFAULT_PG
    required = os.environ.get("ATTEST_REQUIRE_POSTGRES") == "1"
    problem = postgres_reachable(pg_url)
    if problem is None:
        code, counts = run_pass(f"PostgreSQL ({pg_url.split('@')[-1]})", {"ATTEST_TEST_DATABASE_URL": pg_url}, argv)
        for k in total:
            total[k] += counts[k]
        if code != 0:
            failures.append("PostgreSQL pass")
    elif required:
        print(f"\nPostgreSQL is required (ATTEST_REQUIRE_POSTGRES=1) but not reachable at {pg_url}: {problem}")
        failures.append("PostgreSQL pass (server not reachable)")
        total["failed"] += 1
    else:
        print(f"\nPostgreSQL not reachable at {pg_url} ({problem}): ran the SQLite pass only. "
              f"Set ATTEST_TEST_POSTGRES_URL to run the PostgreSQL pass.")
    print()
    if failures:
        print("FAILED: " + ", ".join(failures))
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
