"""Console fixtures: logging in through the form, CSRF tokens from the pages, a line with data,
and Debian's Chromium (Playwright, headless) on the app served from a thread.

No browser is downloaded: Playwright drives /usr/bin/chromium, and a missing one fails the
test, it is never skipped.
"""
from __future__ import annotations

import re
import shutil
import uuid

import pytest

# post_completion: imported from here by the console modules
from tests.support.factories import FCT_ROUTING, SYSTEM, post_completion  # noqa: F401
from tests.support.live import serve_in_thread

# Every page of the console by its screenshot's name (docs/screenshots/console-NAME-LANG.png):
# its endpoint. The console's other GET routes are not pages (fragments, files, images).
PAGES = {"login": "login", "overview": "overview", "stations": "stations", "lots": "lots",
         "lot": "lot", "printers": "printers", "firmware": "firmware", "backups": "backups",
         "users": "users", "audit": "audit_log"}
NOT_PAGES = {"static", "overview_live", "stations_live", "lot_audit", "lot_csv", "lot_pdf",
             "template_preview", "backup_download"}
LANGUAGES = ("en", "ko")
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct-horse-battery"
KOREAN_NAME = "심박 측정기 모듈"


def csrf_token(client, path: str = "/console/login") -> str:
    """The CSRF token a console page carries in its forms."""
    match = TOKEN.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def log_in(client, username: str, password: str = PASSWORD):
    """Post the login form as a browser would (token first); returns the response."""
    token = csrf_token(client)
    return client.post("/console/login", data={"username": username, "password": password,
                                               "csrf_token": token})


@pytest.fixture()
def console(client, factory):
    """console(role) -> a test client logged in to the console as a fresh user of that role."""
    def _as(role: str = "operator"):
        _uid, name = factory.user(role)
        resp = log_in(client, name)
        assert resp.status_code == 302, resp.get_data(as_text=True)
        client.console_user = name
        return client
    return _as


@pytest.fixture()
def line(app, client, factory, auth):
    """A product with a Korean name, a lot past SMT with an FCT reject, and a lot on hold."""
    from web.services import lots, products
    from web.services.completions.processing import process_completion
    code = f"HR-{uuid.uuid4().hex[:6].upper()}"
    with app.app_context():
        products.create_product(code, KOREAN_NAME, FCT_ROUTING, SYSTEM)
    station = factory.station(steps=["SMT", "FCT", "PACK"], printer_uri="sim://console")
    lot = factory.lot(code, 5, serials=None)
    held = factory.lot(code, 3)
    op = auth("operator")
    ids = [post_completion(client, op, lot, "SMT", station),
           post_completion(client, op, lot, "FCT", station,
                           measurements={"voltage": 9.9, "current_ma": 40})]
    with app.app_context():
        outcomes = [process_completion(i) for i in ids]
        lots.change_state(held, "hold", "솔더 불량 의심", SYSTEM)
    assert outcomes == ["accepted", "rejected"], outcomes
    return {"product": code, "station": station, "lot": lot, "held": held}


@pytest.fixture()
def fw_dir(app, tmp_path, monkeypatch):
    """A fresh local firmware directory for this test."""
    monkeypatch.setitem(app.config, "FIRMWARE_DIR", str(tmp_path / "firmware"))
    return tmp_path / "firmware"


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the module's tests."""
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not shutil.which(chromium):
        pytest.fail("Chromium is required (Debian package `chromium`, deploy/apt-packages.txt)",
                    pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def live_url(app, db):
    """The app on a real HTTP port for the browser (a thread; stopped after the test)."""
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture()
def page(browser):
    """A fresh browser context (no cookies) at a laptop's 1366x768, English first."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US",
                                  accept_downloads=True)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def log_in_browser(page, url: str, username: str) -> None:
    """Log in through the console's form in the browser; lands on the overview."""
    page.goto(f"{url}/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console/")
