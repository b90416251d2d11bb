"""Real-browser journeys: headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser) driven by
Playwright against the application served on 127.0.0.1 from the test's own database.

Without Chromium or Playwright these tests are skipped, unless ATTEST_REQUIRE_BROWSER=1 (set by .ci/run), which
turns a missing browser into a failure. A failing journey leaves a full-page screenshot and the page's HTML in
test-artifacts/ (or ATTEST_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from testkit.plugin import PASSWORD, totp_code

CHROMIUM = os.environ.get("ATTEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ATTEST_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian package chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; it uses the system Chromium)"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def chromium():
    problem = _missing()
    if problem is not None:
        if os.environ.get("ATTEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"A browser is required (ATTEST_REQUIRE_BROWSER=1) but {problem}.")
        pytest.skip(f"real-browser journeys need Chromium and Playwright: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def live_server(app):
    """The test's application served over HTTP on 127.0.0.1 (a free port), in threads of this process."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


class Browser:
    """Opens pages (desktop or phone-sized) in their own browser contexts, keeping each for the screenshots."""

    def __init__(self, chromium, base_url: str, request) -> None:
        self.chromium = chromium
        self.base_url = base_url
        self.request = request
        self.pages: list = []

    def page(self, *, phone: bool = False):
        context = self.chromium.new_context(base_url=self.base_url, **(PHONE if phone else {}))
        context.set_default_timeout(15_000)
        page = context.new_page()
        self.pages.append(page)
        return page

    def artefacts(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.request.node.nodeid)[-150:]
        for n, page in enumerate(self.pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
                (ARTIFACTS / f"{name}-{n}.html").write_text(page.content(), encoding="utf-8")
            except Exception:  # the page may be gone: keep whatever else there is
                pass

    def close(self) -> None:
        for page in self.pages:
            page.context.close()


@pytest.fixture
def browser(chromium, live_server, request):
    opened = Browser(chromium, live_server, request)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        opened.artefacts()
    opened.close()


def code_for(user) -> str:
    """A fresh authentication code: end the test's read transaction first, so that it sees the codes the server
    already accepted (a code is never accepted twice)."""
    from core.db import db

    db.session.rollback()
    return totp_code(user)


def log_in(page, user, password: str = PASSWORD) -> None:
    """The login page, then the authentication code page when the person has a second factor."""
    page.goto("/login")
    page.fill("#username", user.username)
    page.fill("#password", password)
    page.click("button:has-text('Log in')")
    if "/login/code" in page.url:
        page.fill("#code", code_for(user))
        page.click("button:has-text('Continue')")
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def sign_with(page, user, button: str, **fields: str) -> None:
    """Fill a signing page (password, authentication code, any other fields by id) and press its button."""
    for field_id, value in fields.items():
        page.fill(f"#{field_id}", value)
    page.fill("#password", PASSWORD)
    if page.locator("#totp_code").count():
        page.fill("#totp_code", code_for(user))
    page.click(f"button:has-text('{button}')")
