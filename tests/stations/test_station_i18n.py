"""i18n completeness: every UI string and every server reason code in Korean and English."""
from __future__ import annotations

import re
from pathlib import Path

import stations
from stations.i18n import (CATALOG, PRINTER_CODES, REASON_CODES, placeholders, printer_text,
                           reason_text, set_language, tr)

SRC = Path(stations.__file__).parent
HANGUL = re.compile(r"[\uac00-\ud7a3]")
SAME_IN_BOTH = {"language.ko", "language.en", "reason.unknown", "form.limits",
                "firmware.assigned"}


def _keys_used_in_code() -> set[str]:
    used = set()
    for path in SRC.rglob("*.py"):
        used |= set(re.findall(r"""\btr\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']""",
                               path.read_text(encoding="utf-8")))
    return used


def test_both_languages_have_the_same_keys_and_placeholders():
    assert set(CATALOG["ko"]) == set(CATALOG["en"])
    for key, english in CATALOG["en"].items():
        assert placeholders(CATALOG["ko"][key]) == placeholders(english), key


def test_every_key_used_in_the_code_exists():
    used = _keys_used_in_code()
    assert len(used) > 60, "the scan for tr() calls found too little"
    assert not used - set(CATALOG["en"])


def test_every_server_reason_code_and_printer_code_is_translated():
    server_codes = set()
    for path in (SRC.parent / "web" / "services").rglob("*.py"):  # read, never imported
        server_codes |= set(re.findall(r'_reason\("([a-z_]+)"', path.read_text()))
    assert len(server_codes) >= 9, server_codes
    assert server_codes <= set(REASON_CODES), server_codes - set(REASON_CODES)
    for code in REASON_CODES:
        assert f"reason.{code}" in CATALOG["en"] and HANGUL.search(CATALOG["ko"][f"reason.{code}"])
    for code in PRINTER_CODES:
        assert HANGUL.search(CATALOG["ko"][f"printer.{code}"]), code


def test_korean_strings_are_korean():
    for key, text in CATALOG["ko"].items():
        if key in SAME_IN_BOTH or key.startswith("language."):
            continue
        assert HANGUL.search(text), f"{key} is not translated: {text!r}"
        assert text != CATALOG["en"][key], key


def test_reason_and_printer_texts_follow_the_language():
    set_language("ko")
    assert reason_text("wrong_step", "lot is at PACK") == "LOT이 다른 공정에 있습니다 (lot is at PACK)"
    assert printer_text("paper_out") == "용지 없음"
    assert tr("offline.queued", count=3) == "오프라인 — 3건 대기"
    set_language("en")
    assert reason_text("out_of_spec") == "A measurement is out of limits; the lot is on hold"
    assert reason_text("brand_new_code", "x") == "brand_new_code (x)"  # unknown: shown raw
    assert tr("offline.queued", count=5) == "offline — 5 queued"
