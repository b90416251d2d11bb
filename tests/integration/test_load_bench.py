"""bench/load.py end to end, briefly: two virtual operators for three seconds against a real gunicorn on 127.0.0.1,
on the suite's database server when it is PostgreSQL (a scratch database of the bench's own), else on SQLite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(r"load_users=2 seconds=3 requests=(\d+) errors=(\d+) p50_ms=\d+\.\d p95_ms=\d+\.\d "
                       r"p99_ms=\d+\.\d")


def _bench(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run the bench; past `timeout` it gets SIGTERM, on which it stops gunicorn and drops its database itself."""
    proc = subprocess.Popen([sys.executable, "bench/load.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"bench/load.py ran over {timeout} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_load_bench_short_run_ends_with_the_summary_line_and_no_errors():
    args = ["--users", "2", "--seconds", "3", "--think", "0.2", "--workers", "2", "--threads", "1",
            "--documents", "3"]
    server = os.environ.get("ATTEST_TEST_DATABASE_URL", "")
    if server.startswith("postgresql"):
        args += ["--database-url", server]
    result = _bench(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match, last
    assert int(match.group(1)) > 0, result.stdout
    assert int(match.group(2)) == 0, result.stdout + result.stderr


def test_load_bench_refuses_any_host_but_loopback():
    result = _bench("--host", "192.0.2.10", timeout=60)
    assert result.returncode == 2
    assert "only ever targets 127.0.0.1" in result.stderr
