"""Load benchmark: N virtual operators (default 50) for S seconds (default 60) against gunicorn on 127.0.0.1.

The script builds a scratch database (a temporary SQLite file, or with --database-url a database created on that
PostgreSQL server and dropped at the end), migrates it, loads the demo organisation and documents and gives each
benchmark operator a few open read-and-sign assignments through the coordinator's service (`assign_manually`). It
then starts gunicorn on a free port of 127.0.0.1 with that database (default 5 sync workers: 2 x cores + 1, one
request per process; --threads runs gthread workers, see docs/performance.md) and drives it over real HTTP
(http.client, one connection, cookie jar and CSRF token per virtual user, one thread each). Nothing but 127.0.0.1 is
ever targeted, the run is bounded in time (gunicorn itself runs under `timeout`), and gunicorn and the scratch
database are removed at the end, also on Ctrl-C or SIGTERM.

Warm-up (not timed): each virtual user logs in as a distinct demo operator. Operators sign (read-and-sign), so under
the default ATTEST_TOTP_REQUIRED=signers each one sets up an authenticator at this first login, as a person would:
the bench reads the key from the set-up page and computes codes with pyotp. The login rate limit is raised for the
scratch server because every virtual user logs in from the same address.

Timed window: each virtual user loops the operator journey with a think time between pages (default uniform 0.5 to
1.5 s; --think 0 saturates the server): home, My training, one assignment (the read-and-sign page), sometimes the
signing form and the signature (password and a fresh authenticator code: a code is accepted once, so at most one
signature per user per 30-second step, and never sooner than the document's minimum reading time after the user
first opened it), then the training record. An error is an exception, a status outside 2xx/3xx, or an answer the
journey does not expect (a redirect to the login page, a refused signature). The last line is
`load_users=<n> seconds=<s> requests=<n> errors=<n> p50_ms=<x> p95_ms=<x> p99_ms=<x>` over the timed window
(errors also count the warm-up); target on 2 cores: zero errors, p95 under 300 ms for page views. Before it come the
figures per page kind and the CPU seconds the server, the bench itself and every other process used in the window
(from /proc): on a shared machine the latencies are only as good as the CPU the server got.

    .venv/bin/python bench/load.py [--users 50] [--seconds 60] [--workers 5] [--threads 1]
                                   [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import make_url  # noqa: E402

from bench.audit_verify import scratch_database  # noqa: E402

HOST = "127.0.0.1"  # the only host this script ever talks to
MAX_USERS, MAX_SECONDS = 300, 600
REQUEST_TIMEOUT = 30  # seconds; bounds every request and so the end of the run
START_TIMEOUT = 90  # seconds for gunicorn to answer
WARMUP_TIMEOUT = 180  # seconds for every virtual user to log in and set up its authenticator
WARMUP_LOGINS = 2  # first logins under way at once
LOGIN_RATE_LIMIT = "100000 per minute"
SECRET_KEY = "bench-secret-key-that-is-long-enough-0123456789"
TOTP_STEP = 30
PAGE_VIEWS = ("home", "my_training", "assignment", "sign_form", "record")
KINDS = (*PAGE_VIEWS, "sign")

CSRF_RE = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')
VERSION_RE = re.compile(r'<input[^>]*name="expected_version"[^>]*value="([^"]*)"')
MEANING_RE = re.compile(r'<input[^>]*name="meaning"[^>]*value="([^"]+)"')
SECRET_RE = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')
ASSIGNMENT_RE = re.compile(r'href="/my-training/(\d+)"')


class JourneyError(Exception):
    """The server answered, but not as the journey expects."""


@dataclass
class Sample:
    kind: str
    ms: float
    ok: bool
    timed: bool  # started inside the timed window


@dataclass
class Run:
    """State shared by the virtual users: samples, the start signal and the window."""

    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ready: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    # first logins spend most of their time in argon2 (password hashing): a few at a time, as people arrive
    logging_in: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(WARMUP_LOGINS))
    go: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    start: float = 0.0
    deadline: float = math.inf
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average of the machine before and after the window
    cpu: CpuUse | None = None

    def timed(self, at: float) -> bool:
        return self.go.is_set() and self.start <= at < self.deadline


# --- seeding --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    username: str
    min_read: dict[int, int]  # open assignment id -> minimum reading time of its document, seconds


def _app_config(url: str) -> dict:
    return {"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "SESSION_COOKIE_SECURE": False}


def seed(url: str, *, users: int, demo_users: int, documents: int, open_each: int) -> list[Operator]:
    """Migrate, load the demo and give `users` demo operators at least `open_each` open read-and-sign assignments
    (the coordinator assigns the first documents by hand); returns them with the minimum reading time of each."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from app import create_app
    from core import demo
    from core.auth.models import User, UserRole
    from core.auth.services import get_by_username
    from core.clock import now_utc
    from core.db import db, transaction
    from training import items
    from training.matrix import assignments as training_admin
    from training.models import OPEN, TrainingAssignment, TrainingSubject

    app = create_app(_app_config(url))
    with app.app_context():
        upgrade()
        with contextlib.redirect_stdout(io.StringIO()):
            demo.load_all(n_users=demo_users, documents=documents)
        operators = list(db.session.scalars(
            sa.select(User.username).join(UserRole).where(UserRole.role == "operator", User.active.is_(True))
            .order_by(User.username).limit(users)))
        if len(operators) < users:
            raise SystemExit(f"the demo holds {len(operators)} operators for {users} virtual users: raise --demo-users")
        with transaction():
            coordinator = get_by_username("coordinator")
            chosen = 0
            for subject in db.session.scalars(sa.select(TrainingSubject).order_by(TrainingSubject.key)):
                if chosen == open_each:
                    break
                if items.current_item(subject) is None:
                    continue
                training_admin.assign_manually(subject, training_admin.Selection(usernames=operators),
                                               due_on=now_utc().date() + timedelta(days=30),
                                               reason="Load benchmark", actor=coordinator)
                chosen += 1
        rows = db.session.execute(
            sa.select(User.username, TrainingAssignment.id, TrainingSubject.min_read_seconds)
            .join(TrainingAssignment, TrainingAssignment.user_id == User.id)
            .join(TrainingSubject, TrainingSubject.id == TrainingAssignment.subject_id)
            .where(User.username.in_(operators), TrainingAssignment.status == OPEN)).all()
        db.session.remove()
        db.engine.dispose()
    min_read: dict[str, dict[int, int]] = {name: {} for name in operators}
    for username, assignment_id, seconds in rows:
        min_read[username][assignment_id] = seconds or 0
    return [Operator(name, min_read[name]) for name in operators]


# --- gunicorn -------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(url: str) -> dict[str, str]:
    """The scratch server's environment: the caller's without any ATTEST_* setting, then the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTEST_")}
    env.update(ATTEST_DATABASE_URL=url, ATTEST_SECRET_KEY=SECRET_KEY, ATTEST_SESSION_COOKIE_SECURE="false",
               ATTEST_LOGIN_RATE_LIMIT=LOGIN_RATE_LIMIT, ATTEST_TOTP_REQUIRED="signers")
    return env


def start_gunicorn(url: str, port: int, workers: int, threads: int, log: Path, lifetime: int) -> subprocess.Popen:
    """gunicorn under coreutils `timeout`: even if this script is killed outright, the server ends after `lifetime`
    seconds. One thread per worker runs gunicorn's sync worker; more threads its gthread worker."""
    command = ["timeout", "--kill-after=10", str(lifetime), sys.executable, "-m", "gunicorn",
               "--bind", f"{HOST}:{port}", "--workers", str(workers), "--threads", str(threads),
               "--keep-alive", "10", "--timeout", "60", "--graceful-timeout", "5",
               "--log-level", "warning", "--error-logfile", str(log), "app:create_app()"]
    return subprocess.Popen(command, cwd=ROOT, env=server_env(url), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_serving(proc: subprocess.Popen, port: int, log: Path) -> None:
    give_up = time.monotonic() + START_TIMEOUT
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}:\n{tail(log)}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/login")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer on {HOST}:{port} within {START_TIMEOUT} s:\n{tail(log)}")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    """SIGTERM (passed on to the gunicorn master: graceful), then SIGKILL to the server's own process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no gunicorn log)"


# --- the virtual user -----------------------------------------------------------------------------------------------


class Browser:
    """One connection to 127.0.0.1 (kept alive when the server allows) with a cookie jar; every request is timed and
    recorded."""

    def __init__(self, port: int, run: Run):
        self.port, self.run = port, run
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _send(self, method: str, path: str, body: str | None) -> tuple[http.client.HTTPResponse, bytes]:
        headers = {"User-Agent": "attest-bench-load", "Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if not reused or attempt == 2:  # a kept-alive connection the server closed: retry once, anew
                    raise
        raise AssertionError("unreachable")

    def request(self, kind: str, method: str, path: str, form: dict | None = None,
                expect: tuple[int, ...] = (200,), location: str | None = None) -> str:
        """Send, time and record one request; raise JourneyError on an answer the journey does not expect."""
        assert not urlsplit(path).netloc, "paths only: the host is always 127.0.0.1"
        started = time.perf_counter()
        ok = False
        try:
            response, data = self._send(method, path, urlencode(form) if form is not None else None)
            self._store_cookies(response.headers.get_all("Set-Cookie") or [])
            if response.will_close:
                self.close()
            status, target = response.status, urlsplit(response.headers.get("Location", "")).path
            if status not in expect or (location is not None and target != location):
                raise JourneyError(f"{method} {path}: {status}{' -> ' + target if target else ''}, expected "
                                   f"{'/'.join(map(str, expect))}{' -> ' + location if location else ''}")
            ok = True
            return data.decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise JourneyError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.run.samples.append(Sample(kind, (time.perf_counter() - started) * 1000, ok, self.run.timed(started)))

    def _store_cookies(self, headers: list[str]) -> None:
        for header in headers:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value


def _token(page: str, pattern: re.Pattern = CSRF_RE) -> str:
    found = pattern.search(page)
    if found is None:
        raise JourneyError(f"the page lacks {pattern.pattern!r}")
    return found.group(1)


class VirtualUser(threading.Thread):
    def __init__(self, index: int, operator: Operator, *, port: int, run: Run, think: float, sign_rate: float,
                 password: str):
        super().__init__(name=f"vu-{index}", daemon=True)
        self.operator, self.shared, self.think, self.sign_rate = operator, run, think, sign_rate
        self.password = password
        self.browser = Browser(port, run)
        self.rng = random.Random(2026 + index)
        self.totp = None
        self.last_step = -1
        self.first_opened: dict[int, float] = {}
        self.signatures = 0

    def pause(self) -> None:
        if self.think > 0:
            self.shared.stop.wait(self.rng.uniform(0.5, 1.5) * self.think)

    def running(self) -> bool:
        return not self.shared.stop.is_set() and time.perf_counter() < self.shared.deadline

    def run(self) -> None:
        try:
            with self.shared.logging_in:
                self.log_in()
        except Exception as exc:  # every failure is counted; none ends a virtual user silently
            self.fail(exc, " (warm-up)")
            return
        finally:
            self.shared.ready.release()
        self.shared.go.wait()
        self.pause()
        while self.running():
            try:
                self.journey()
            except Exception as exc:
                self.fail(exc)
                self.pause()
        self.browser.close()

    def fail(self, exc: Exception, when: str = "") -> None:
        """One error of the run: a request that failed, or a page the journey could not use."""
        detail = str(exc) if isinstance(exc, JourneyError) else f"{type(exc).__name__}: {exc}"
        self.shared.failures.append(f"{self.operator.username}{when}: {detail}")

    def code(self) -> str:
        step = int(time.time()) // TOTP_STEP
        self.last_step = step
        return self.totp.at(step * TOTP_STEP)

    def log_in(self) -> None:
        """First login of a demo operator: password, then the authenticator set-up the default policy asks for."""
        import pyotp

        b = self.browser
        page = b.request("login_form", "GET", "/login")
        target = "/account/totp"
        b.request("login", "POST", "/login", {"csrf_token": _token(page), "username": self.operator.username,
                                              "password": self.password}, expect=(302,), location=target)
        page = b.request("totp_setup", "GET", target)
        self.totp = pyotp.TOTP(_token(page, SECRET_RE))
        b.request("totp_confirm", "POST", target, {"csrf_token": _token(page), "code": self.code()},
                  expect=(302,), location="/")

    def journey(self) -> None:
        b = self.browser
        b.request("home", "GET", "/")
        self.pause()
        if not self.running():
            return
        page = b.request("my_training", "GET", "/my-training/")
        open_part, _, done_part = page.partition("Completed</h2>")
        open_ids = [int(i) for i in ASSIGNMENT_RE.findall(open_part)]
        pick = self.rng.choice(open_ids or [int(i) for i in ASSIGNMENT_RE.findall(done_part)] or [0])
        self.pause()
        if pick and self.running():
            b.request("assignment", "GET", f"/my-training/{pick}")
            self.first_opened.setdefault(pick, time.perf_counter())
            self.pause()
            if pick in open_ids and self.can_sign(pick) and self.running():
                self.sign(pick)
        if self.running():
            b.request("record", "GET", "/training/records/mine")
            self.pause()

    def can_sign(self, assignment_id: int) -> bool:
        read_for = time.perf_counter() - self.first_opened[assignment_id]
        return (self.rng.random() < self.sign_rate and int(time.time()) // TOTP_STEP > self.last_step
                and read_for > self.operator.min_read.get(assignment_id, 0) + 1)

    def sign(self, assignment_id: int) -> None:
        b = self.browser
        path = f"/my-training/{assignment_id}/sign"
        page = b.request("sign_form", "GET", path)
        self.pause()
        if not self.running():
            return
        form = {"csrf_token": _token(page), "expected_version": _token(page, VERSION_RE),
                "meaning": _token(page, MEANING_RE), "password": self.password, "totp_code": self.code()}
        b.request("sign", "POST", path, form, expect=(302,), location="/my-training/")
        self.signatures += 1


# --- CPU accounting (Linux /proc) -----------------------------------------------------------------------------------


def _proc_stat(pid: str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ... (utime and stime at 11, 12)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def server_cpu(group: int, database: str | None) -> dict[tuple[str, int], int]:
    """CPU ticks used so far by each server process, keyed ("app", pid) for gunicorn (the process group this script
    started) and ("database", pid) for the backends of a PostgreSQL server on this machine serving the scratch
    database (named in their process title)."""
    found: dict[tuple[str, int], int] = {}
    if not Path("/proc/self/stat").exists():
        return found
    for entry in os.scandir("/proc"):
        fields = _proc_stat(entry.name) if entry.name.isdigit() else None
        if fields is None:
            continue
        role = "app" if int(fields[2]) == group else None
        if role is None and database:
            try:
                title = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            role = "database" if title.startswith("postgres:") and f" {database} " in title else None
        if role is not None:
            found[role, int(entry.name)] = int(fields[11]) + int(fields[12])
    return found


def machine_cpu() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, all cores."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0, 0
    return sum(values) - values[3] - values[4], sum(values)


@dataclass
class CpuUse:
    """Seconds of CPU spent during the timed window, to read the latencies against (the machine may be shared)."""

    app: float = 0.0  # gunicorn
    database: float = 0.0  # PostgreSQL backends of the scratch database (SQLite runs inside gunicorn)
    client: float = 0.0  # this script
    machine_busy: float = 0.0
    machine_total: float = 0.0


Snapshot = tuple[dict[tuple[str, int], int], float, tuple[int, int]]


class CpuMeter:
    def __init__(self, group: int, database: str | None):
        self.group, self.database = group, database
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def snapshot(self) -> Snapshot:
        return server_cpu(self.group, self.database), time.process_time(), machine_cpu()

    def since(self, start: Snapshot) -> CpuUse:
        (server0, client0, (busy0, total0)), (server1, client1, (busy1, total1)) = start, self.snapshot()
        used = {"app": 0, "database": 0}
        for key, ticks in server1.items():
            used[key[0]] += ticks - server0.get(key, 0)
        return CpuUse(used["app"] / self.tick, used["database"] / self.tick, client1 - client0,
                      (busy1 - busy0) / self.tick, (total1 - total0) / self.tick)


# --- figures --------------------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values` (0 when empty)."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def figures(samples: list[Sample]) -> tuple[int, int, float, float, float, float]:
    ms = sorted(s.ms for s in samples)
    return (len(samples), sum(not s.ok for s in samples), percentile(ms, 50), percentile(ms, 95),
            percentile(ms, 99), ms[-1] if ms else 0.0)


def table(rows: list[tuple[str, list[Sample]]]) -> list[str]:
    lines = [f"{'kind':<14}{'requests':>9}{'errors':>7}{'p50_ms':>9}{'p95_ms':>9}{'p99_ms':>9}{'max_ms':>9}"]
    for label, samples in rows:
        n, errors, p50, p95, p99, top = figures(samples)
        lines.append(f"{label:<14}{n:>9}{errors:>7}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}{top:>9.1f}")
    return lines


def report(args, run: Run, users: list[VirtualUser], database: str) -> None:
    samples = list(run.samples)
    warmup = [s for s in samples if not s.timed and s.kind not in KINDS]
    timed = [s for s in samples if s.timed]
    print(f"warm-up (not timed): {len(users)} first logins with authenticator set-up")
    print("\n".join(table([(kind, [s for s in warmup if s.kind == kind])
                           for kind in ("login_form", "login", "totp_setup", "totp_confirm")])))
    print(f"timed window: {args.seconds} s, database {database}, signatures {sum(u.signatures for u in users)}, "
          f"machine load average before/after {run.load[0]:.2f}/{run.load[1]:.2f} on {os.cpu_count()} cores")
    rows = [(kind, [s for s in timed if s.kind == kind]) for kind in KINDS]
    rows += [("page views", [s for s in timed if s.kind in PAGE_VIEWS]), ("all", timed)]
    print("\n".join(table(rows)))
    for failure in run.failures[:20]:
        print(f"error: {failure}", file=sys.stderr)
    n, _, p50, p95, p99, _ = figures(timed)
    errors = len(run.failures)  # each failed request, or page the journey could not use, ended one journey
    cpu = run.cpu
    if cpu is not None and cpu.machine_total:
        server = cpu.app + cpu.database
        others = max(0.0, cpu.machine_busy - server - cpu.client)
        backends = f", PostgreSQL backends {cpu.database:.1f} s" if database == "postgresql" else ""
        print(f"cpu in the window: gunicorn {cpu.app:.1f} s{backends}, bench client {cpu.client:.1f} s, other "
              f"processes {others:.1f} s; machine busy {100 * cpu.machine_busy / cpu.machine_total:.0f}% of "
              f"{cpu.machine_total / args.seconds:.0f} cores")
        print(f"server_cpu_ms_per_request={1000 * server / max(n, 1):.1f}")
    print(f"requests_per_s={n / args.seconds:.1f}")
    print(f"load_users={args.users} seconds={args.seconds} requests={n} errors={errors} "
          f"p50_ms={p50:.1f} p95_ms={p95:.1f} p99_ms={p99:.1f}")


# --- main -----------------------------------------------------------------------------------------------------------


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def drive(args, operators: list[Operator], port: int, log: Path, meter: CpuMeter) -> tuple[Run, list[VirtualUser]]:
    from core.demo import DEMO_PASSWORD

    run = Run()
    users = [VirtualUser(i, op, port=port, run=run, think=args.think, sign_rate=args.sign_rate,
                         password=DEMO_PASSWORD) for i, op in enumerate(operators)]
    try:
        for user in users:
            user.start()
        give_up = time.monotonic() + WARMUP_TIMEOUT
        for _ in users:
            if not run.ready.acquire(timeout=max(0.0, give_up - time.monotonic())):
                raise SystemExit(f"the virtual users did not all log in within {WARMUP_TIMEOUT} s:\n{tail(log)}")
        before, cpu = os.getloadavg()[0], meter.snapshot()
        run.start = time.perf_counter()
        run.deadline = run.start + args.seconds
        run.go.set()
        while time.perf_counter() < run.deadline:
            time.sleep(min(0.2, max(0.0, run.deadline - time.perf_counter())))
        run.load, run.cpu = (before, os.getloadavg()[0]), meter.since(cpu)
    finally:
        run.stop.set()
        run.go.set()
        for user in users:
            user.join(timeout=REQUEST_TIMEOUT + 5)
    return run, users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50, help=f"virtual users, 1 to {MAX_USERS} (default 50)")
    parser.add_argument("--seconds", type=int, default=60, help=f"timed window, 1 to {MAX_SECONDS} (default 60)")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean think time between pages, seconds (uniform 0.5x to 1.5x; 0: none; default 1)")
    parser.add_argument("--sign-rate", type=float, default=0.1,
                        help="chance that an open assignment viewed is signed, when signing is possible (default 0.1)")
    parser.add_argument("--workers", type=int, default=5, help="gunicorn worker processes (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per gunicorn worker (default 1: sync workers; more: gthread workers)")
    parser.add_argument("--database-url", help="PostgreSQL server URL; a scratch database is created on it and dropped")
    parser.add_argument("--demo-users", type=int, help="demo users to load (default: enough operators for --users)")
    parser.add_argument("--documents", type=int, default=30, help="demo documents to load (default 30)")
    parser.add_argument("--open-each", type=int, default=3, help="open assignments given to each operator (default 3)")
    parser.add_argument("--host", default=HOST, help="must be 127.0.0.1: the bench never targets another host")
    args = parser.parse_args(argv)
    if args.host != HOST:
        parser.error(f"--host {args.host!r} refused: this bench only ever targets {HOST}")
    if not 1 <= args.users <= MAX_USERS:
        parser.error(f"--users must be 1 to {MAX_USERS}")
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be 1 to {MAX_SECONDS}")
    if not 0 <= args.think <= 10 or not 0 <= args.sign_rate <= 1:
        parser.error("--think must be 0 to 10 seconds and --sign-rate 0 to 1")
    if not (1 <= args.workers <= 16 and 1 <= args.threads <= 32 and 1 <= args.documents <= 500
            and 1 <= args.open_each <= 10):
        parser.error("--workers 1-16, --threads 1-32, --documents 1-500, --open-each 1-10")
    # operators are 12 of every 19 generated demo users; 20 more leave room for the fixed demo logins
    demo_users = args.demo_users or math.ceil(args.users * 19 / 12) + 20

    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (a background job)
        signal.signal(signum, _interrupt)
    for name in [name for name in os.environ if name.startswith("ATTEST_")]:
        del os.environ[name]  # the scratch installation runs with the defaults and the bench's settings only
    with scratch_database(args.database_url) as url, tempfile.TemporaryDirectory(prefix="attest-load-") as tmp:
        database = url.split(":", 1)[0].split("+")[0]
        started = time.perf_counter()
        operators = seed(url, users=args.users, demo_users=demo_users, documents=args.documents,
                         open_each=args.open_each)
        fewest = min(len(op.min_read) for op in operators)
        print(f"seeded {database} scratch database in {time.perf_counter() - started:.1f} s: {demo_users} demo users, "
              f"{args.documents} documents, {args.users} operators with at least {fewest} open assignments each")
        port, log = free_port(), Path(tmp) / "gunicorn.log"
        kind = "sync" if args.threads == 1 else "gthread"
        print(f"gunicorn on {HOST}:{port}: {args.workers} {kind} workers x {args.threads} threads; scratch settings "
              f"ATTEST_LOGIN_RATE_LIMIT={LOGIN_RATE_LIMIT!r} (raised from 20 per minute: every virtual user logs in "
              f"from {HOST}), ATTEST_TOTP_REQUIRED=signers (operators set up an authenticator at first login)")
        print(f"virtual users: {args.users}, think time {args.think:g} s (uniform x0.5 to x1.5), sign rate "
              f"{args.sign_rate:g}", flush=True)
        started = time.perf_counter()
        lifetime = START_TIMEOUT + WARMUP_TIMEOUT + args.seconds + 2 * REQUEST_TIMEOUT + 60
        proc = start_gunicorn(url, port, args.workers, args.threads, log, lifetime)
        try:
            wait_until_serving(proc, port, log)
            print(f"gunicorn serving after {time.perf_counter() - started:.1f} s", flush=True)
            scratch = make_url(url).database if database == "postgresql" else None
            run, users = drive(args, operators, port, log, CpuMeter(proc.pid, scratch))
        finally:
            started = time.perf_counter()
            stop_gunicorn(proc)
            print(f"gunicorn stopped in {time.perf_counter() - started:.1f} s", flush=True)
        if run.failures and log.exists():
            kept = Path(tempfile.mkstemp(prefix="attest-load-gunicorn-", suffix=".log")[1])
            shutil.copyfile(log, kept)
            print(f"gunicorn log kept in {kept}; last lines:\n{tail(log)}", file=sys.stderr)
    report(args, run, users, database)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: gunicorn stopped and the scratch database removed", file=sys.stderr)
        sys.exit(130)
