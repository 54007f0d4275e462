"""The console in Debian's Chromium (Playwright, headless): log in, the overview, a lot, export.

One browser for the module; the app is served from a thread by werkzeug on a free port of the
loopback interface, on the session's PostgreSQL and Redis. No browser is downloaded: Playwright
drives /usr/bin/chromium, and a missing one fails the test, it is never skipped.
"""
from __future__ import annotations

import pytest

from .conftest import KOREAN_NAME, LANGUAGES, PAGES, log_in_browser

pytestmark = pytest.mark.slow


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_log_in_see_the_overview_open_a_lot_and_export(page, live_url, factory, line, tmp_path,
                                                      monkeypatch):
    from web.console.views import overview
    monkeypatch.setattr(overview, "REFRESH_SECONDS", 1)  # the poll, seen within the test
    _uid, name = factory.user("supervisor")
    log_in_browser(page, live_url, name)
    assert page.locator("h1").inner_text() == "Line overview"
    assert line["held"] in page.locator("#holds").inner_text()
    assert page.evaluate("typeof window.htmx") == "object"  # the vendored asset loaded
    assert _fits(page)
    with page.expect_response(lambda r: "/console/overview/live" in r.url) as polled:
        pass  # htmx polls the fragment on its own
    assert polled.value.status == 200
    assert line["held"] in page.locator("#holds").inner_text()  # still there after the swap
    page.click("nav >> text=Lots")
    page.fill("input[name=product]", line["product"])
    page.click("form.search button[type=submit]")
    page.click(f"#lot-results >> text={line['lot']}")
    assert KOREAN_NAME in page.locator("#product").inner_text()
    assert page.locator(".action-release").count() == 1  # a supervisor may release it
    assert _fits(page)
    with page.expect_download() as info:
        page.click("#export-pdf")
    pdf = tmp_path / "dhr.pdf"
    info.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    with page.expect_download() as info:
        page.click("#export-csv")
    assert info.value.suggested_filename == f"{line['lot']}-dhr.csv"


def test_language_switch_and_a_tablet(browser, live_url, factory, line):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, locale="ko-KR")
    page = context.new_page()
    try:
        page.goto(f"{live_url}/console/login")
        assert page.locator("h1").inner_text() == "로그인"  # from Accept-Language
        page.click("button[data-lang=en]")
        assert page.locator("h1").inner_text() == "Log in"
        _uid, name = factory.user("operator")
        log_in_browser(page, live_url, name)
        assert page.locator("nav >> text=Users").count() == 0  # an operator's menu
        assert _fits(page)
        page.click("button[data-lang=ko]")
        assert page.locator("h1").inner_text() == "라인 현황"
    finally:
        context.close()


def test_firmware_upload_shows_its_progress(page, live_url, factory, fw_dir):
    from tests.support.firmwaredata import image
    product = factory.product(routing=[{"step": "FLASH", "name": "Flash",
                                        "requires_firmware": True}])
    _uid, name = factory.user("admin")
    log_in_browser(page, live_url, name)
    page.click("nav >> text=Firmware")
    # The bar's values, kept where the page after the upload's redirect can still read them.
    page.evaluate("""() => { const bar = document.getElementById('upload-progress');
        new MutationObserver(() => sessionStorage.setItem('seen', (sessionStorage.getItem('seen')
            || '') + (bar.hidden ? '' : bar.value) + ',')).observe(bar, {attributes: true}); }""")
    page.fill("#firmware-upload input[name=product]", product)
    page.fill("#firmware-upload input[name=version]", "3.1.4")
    page.set_input_files("#firmware-upload input[name=file]", files=[{
        "name": "fw.bin", "mimeType": "application/octet-stream", "buffer": image(3_000_000)}])
    with page.expect_navigation():
        page.click("#firmware-upload button[type=submit]")
    assert page.locator(".firmware h2").first.inner_text().startswith(f"{product} 3.1.4")
    seen = [v for v in page.evaluate("sessionStorage.getItem('seen')").split(",") if v]
    assert seen and seen[-1] == "100", seen  # the bar was shown and filled


def test_every_page_fits_a_laptop_in_both_languages(page, live_url, app, client, factory,
                                                    fw_dir):
    """Each page at 1366x768, in English and Korean, without sideways scrolling, on a line with
    a working day's data (tests/console/demo.py).

    With NEUROHUB_SCREENSHOTS=<folder> it also saves a screenshot of each: docs/screenshots/
    is made so (see the README's console section).
    """
    import os
    from pathlib import Path

    from flask import url_for

    from . import demo
    shots = os.environ.get("NEUROHUB_SCREENSHOTS")
    data = demo.seed(app, client, factory)
    with app.test_request_context():
        paths = {key: url_for(f"console.{endpoint}", **({"lot_no": data["rejected"]}
                                                        if key == "lot" else {}))
                 for key, endpoint in PAGES.items()}

    def visit(key: str, lang: str) -> None:
        page.goto(live_url + paths[key])
        assert page.locator("html").get_attribute("lang") == lang
        assert _fits(page), (lang, key)
        if shots:
            page.wait_for_load_state("networkidle")  # the template previews drawn
            _save_screenshot(page, Path(shots) / f"console-{key}-{lang}.png")
    for lang in LANGUAGES:  # the login page first, before there is a session
        page.goto(live_url + paths["login"])
        page.click(f"button[data-lang={lang}]")
        visit("login", lang)
    log_in_browser(page, live_url, data["admin"])
    for lang in LANGUAGES:
        page.click(f"button[data-lang={lang}]")
        for key in PAGES:
            if key != "login":
                visit(key, lang)


def _save_screenshot(page, path) -> None:
    """The viewport as a 256-colour PNG: the pages are flat colours and text, so the palette
    keeps them legible at a fraction of the size (they live in git, in docs/screenshots/)."""
    import io

    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(page.screenshot()))
    shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
