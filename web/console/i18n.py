"""Korean and English for the console: JSON catalogues keyed by message id.

Why not gettext/Flask-Babel: the console has two languages and a couple of hundred short,
plural-free strings. Babel keeps them in .po files that must be compiled to .mo (a generated
file to build or commit) and pulls in a locale toolchain; a dict per language read from JSON
source files needs neither, and a test checks that both catalogues hold the same ids.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from flask import Flask, request, session

LANGUAGES = ("en", "ko")
DEFAULT = "en"
CATALOGUES = Path(__file__).parent / "i18n"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The messages of one language (read once per process)."""
    return json.loads((CATALOGUES / f"{lang}.json").read_text(encoding="utf-8"))


def current_language() -> str:
    """The user's choice (session), else the best match of Accept-Language, else English."""
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT)


def translate(key: str, **values) -> str:
    """The message ``key`` in the current language (English, then the id, when missing).

    The result is a plain string: Jinja's autoescape escapes it, values and all.
    """
    lang = current_language()
    text = catalogue(lang).get(key) or catalogue(DEFAULT).get(key) or key
    return text.format(**values) if values else text


def init_app(app: Flask) -> None:
    """Make ``_`` and the current language available to every template."""
    app.jinja_env.globals["_"] = translate
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
