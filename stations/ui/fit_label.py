"""A word-wrapped label whose font shrinks until its text fits: long messages are never cut."""
from __future__ import annotations

from ..qt import QFont, QFontMetrics, QLabel, QtCore

Qt = QtCore.Qt


class FitLabel(QLabel):
    """Word-wrapped; the point size steps down from ``max_pt`` to ``min_pt`` until the text
    fits the width and ``max_height`` (the rest of the column stays for the history)."""

    def __init__(self, max_pt: int = 18, min_pt: int = 10, max_height: int = 320,
                 bold: bool = True, parent=None):
        super().__init__("", parent)
        self.max_pt, self.min_pt = max_pt, min_pt
        self.setWordWrap(True)
        self.setMaximumHeight(max_height)
        font = QFont(self.font())
        font.setPointSize(max_pt)
        font.setBold(bold)
        self.setFont(font)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        """Show ``text`` at the largest size that fits."""
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """A new width may allow a bigger size, or need a smaller one."""
        super().resizeEvent(event)
        self._fit()

    def _fits(self, font: QFont, width: int, height: int) -> bool:
        need = QFontMetrics(font).boundingRect(0, 0, width, 1 << 20,
                                               int(Qt.TextWordWrap) | int(self.alignment()),
                                               self.text())
        return need.width() <= width and need.height() <= height

    def _fit(self) -> None:
        rect = self.contentsRect()
        width = rect.width() - 2 * self.margin()
        height = self.maximumHeight() - (self.height() - rect.height()) - 2 * self.margin()
        if width <= 0 or not self.text():
            return
        font = QFont(self.font())
        for size in range(self.max_pt, self.min_pt - 1, -1):
            font.setPointSize(size)
            if self._fits(font, width, height):
                break
        if font.pointSize() != self.font().pointSize():
            self.setFont(font)
