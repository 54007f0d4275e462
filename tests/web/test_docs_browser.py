"""/api/docs in a real browser: headless Chromium renders the OpenAPI 3.1 document offline.

The app is served by a real HTTP server (werkzeug, in a thread) and Chromium loads the page,
its vendored assets and /api/v1/openapi.json from it; the test reads the DOM after the scripts ran.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from web.openapi import build_openapi

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=15000"]


@pytest.fixture()
def live_url(app):
    """The app on a real HTTP port of the loopback interface, for the browser."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def _rendered_dom(url: str, profile) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("headless Chromium is required (Debian package `chromium`, listed in "
                    "deploy/apt-packages.txt)", pytrace=False)
    for _attempt in range(3):  # a loaded CI machine can miss the budget once
        done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--dump-dom", url], capture_output=True, text=True, timeout=120)
        if "opblock-summary" in done.stdout or "Unable to render" in done.stdout:
            return done.stdout
    raise AssertionError(f"Chromium rendered no operations:\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-2000:]}")


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
