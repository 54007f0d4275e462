"""/api/docs in a real browser: headless Chromium renders the OpenAPI 3.1 document offline.

The app is served by a real HTTP server (werkzeug, in a thread) and Chromium loads the page,
its vendored assets and /api/v1/openapi.json from it; the test reads the DOM after the scripts ran.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess

import pytest

from tests.support.live import serve_in_thread
from web.openapi import build_openapi

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=15000"]


@pytest.fixture()
def live_url(app):
    """The app on a real HTTP port of the loopback interface, for the browser."""
    with serve_in_thread(app) as url:
        yield url


def _chromium_dom(chromium: str, url: str, profile) -> tuple[str, str]:
    """Chromium's DOM after the page's scripts ran; its whole process group is ended after."""
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "--dump-dom", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        return "", "timed out"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # renderer and GPU helpers too
        except ProcessLookupError:
            pass
        proc.wait()


def _rendered_dom(url: str, profile) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("headless Chromium is required (Debian package `chromium`, listed in "
                    "deploy/apt-packages.txt)", pytrace=False)
    for _attempt in range(3):  # a loaded CI machine can miss the budget once
        out, err = _chromium_dom(chromium, url, profile)
        if "opblock-summary" in out or "Unable to render" in out:
            return out
    raise AssertionError(f"Chromium rendered no operations:\n{out[-2000:]}\n{err[-2000:]}")


def test_docs_page_renders_every_operation_in_chromium(app, live_url, tmp_path):
    dom = _rendered_dom(f"{live_url}/api/docs", tmp_path / "chromium-profile")
    assert "Unable to render" not in dom, "Swagger UI could not render the OpenAPI document"
    assert "OAS 3.1" in dom  # the UI read the document's version
    text = html.unescape(dom)
    rendered_paths = set(re.findall(r'data-path="([^"]+)"', text))
    doc = build_openapi(app)
    for path, item in doc["paths"].items():
        assert path in rendered_paths, f"{path} is not listed on /api/docs"
        for op in item.values():
            assert f">{op['operationId']}<" in text, f"{op['operationId']} is not listed"
