"""Pick a UI font that really contains Hangul, so Korean never renders as empty boxes."""
from __future__ import annotations

from ..qt import QApplication, QFont, QFontDatabase, QtGui

PREFERRED = ("Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "맑은 고딕", "NanumGothic",
             "Apple SD Gothic Neo", "UnDotum", "Baekmuk Gulim")
SAMPLE = "완공한글"


def supports_hangul(font: QFont) -> bool:
    """True when the font Qt resolves (no fallback) has glyphs for Korean text."""
    raw = QtGui.QRawFont.fromFont(font)
    return raw.isValid() and all(raw.glyphIndexesForString(SAMPLE))


def hangul_family() -> str | None:
    """The best installed family with Korean glyphs, or None (install fonts-noto-cjk)."""
    korean = QFontDatabase().families(QFontDatabase.Korean)
    for family in PREFERRED:
        if family in korean and supports_hangul(QFont(family)):
            return family
    for family in korean:
        if supports_hangul(QFont(family)):
            return family
    return None


def setup_fonts(app: QApplication, point_size: int = 12) -> QFont:
    """Make the application font one with Hangul (size suits gloves and distance)."""
    font = QFont(app.font())
    family = hangul_family()
    if family:
        font.setFamily(family)
    font.setPointSize(point_size)
    app.setFont(font)
    return font
