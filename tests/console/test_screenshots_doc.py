"""docs/screenshots/ has every console page in both languages, and the README shows each one:
a new page without its screenshots, or a screenshot the README forgot, fails here."""
from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from .conftest import LANGUAGES, NOT_PAGES, PAGES

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"


def test_the_page_list_is_every_page_of_the_console(app):
    endpoints = {rule.endpoint.split(".", 1)[1] for rule in app.url_map.iter_rules()
                 if rule.endpoint.startswith("console.") and "GET" in rule.methods}
    assert endpoints - NOT_PAGES == set(PAGES.values())  # a new page goes in PAGES


def test_every_page_has_its_screenshots_and_the_readme_shows_them():
    expected = {f"console-{key}-{lang}.png" for key in PAGES for lang in LANGUAGES}
    assert {p.name for p in SHOTS.glob("*.png")} == expected
    for name in sorted(expected):
        with Image.open(SHOTS / name) as shot:
            assert shot.size == (1366, 768), name
        assert (SHOTS / name).stat().st_size < 150_000, name  # they live in git
    shown = set(re.findall(r"\(docs/screenshots/([^)\s]+\.png)\)",
                           (ROOT / "README.md").read_text()))
    assert shown == expected
