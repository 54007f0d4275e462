"""The lot panel: product, quantity, status, step, unit and whether this station serves it."""
from __future__ import annotations

import time

from ..i18n import tr
from ..qt import QFont, QFormLayout, QGroupBox, QLabel


class LotPanel(QGroupBox):
    """Shows the scanned lot; ``show_lot(None)`` shows the 'scan a lot' prompt."""

    ROWS = ("lot.product", "lot.quantity", "lot.status", "lot.step", "lot.unit", "lot.serves")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("lotPanel")
        form = QFormLayout(self)
        form.setVerticalSpacing(4)  # fits a long product name and station line at 1024 x 768
        self.lot_label = QLabel(tr("lot.none"))
        self.lot_label.setObjectName("lotNo")
        big = QFont()
        big.setPointSize(20)
        big.setBold(True)
        self.lot_label.setFont(big)
        form.addRow(self.lot_label)
        self.titles: dict[str, QLabel] = {}
        self.values: dict[str, QLabel] = {}
        value_font = QFont()
        value_font.setPointSize(14)
        for key in self.ROWS:
            title, value = QLabel(tr(key)), QLabel("")
            value.setObjectName(key.replace(".", "_"))
            value.setFont(value_font)
            value.setWordWrap(True)
            form.addRow(title, value)
            self.titles[key], self.values[key] = title, value
        self.note = QLabel("")
        self.note.setObjectName("lotNote")
        self.note.setWordWrap(True)
        self.note.setVisible(False)  # only for an offline copy: no empty row otherwise
        form.addRow(self.note)

    def retranslate(self) -> None:
        """Re-read the row titles in the current language."""
        for key, title in self.titles.items():
            title.setText(tr(key))

    def show_lot(self, lot: dict | None, product: dict | None = None, unit: str | None = None,
                 serves: bool | None = None, station_steps=(), cached_at: float | None = None
                 ) -> None:
        """Fill the panel from a lot dict (as the API returns it)."""
        if lot is None:
            self.lot_label.setText(tr("lot.none"))
            for value in self.values.values():
                value.setText("")
            self.note.setText("")
            self.note.setVisible(False)
            return
        step = lot.get("current_step")
        self.lot_label.setText(lot["lot_no"])
        name = (product or {}).get("name")
        self.values["lot.product"].setText(f"{lot['product']}" + (f" — {name}" if name else ""))
        self.values["lot.quantity"].setText(tr("lot.quantity_value", good=lot.get("qty_good"),
                                               quantity=lot.get("quantity"),
                                               passed=lot.get("step_passed", 0)))
        status = lot.get("status", "")
        self.values["lot.status"].setText(tr(f"status.{status}") if status else "")
        self.values["lot.step"].setText(step or "—")
        self.values["lot.unit"].setText(unit or "—")
        serves_label = self.values["lot.serves"]
        if step is None or serves is None:
            serves_label.setText("—")
            serves_label.setStyleSheet("")
        elif serves:
            serves_label.setText(tr("lot.serves.yes", step=step))
            serves_label.setStyleSheet("color: #1b7f1b;")
        else:
            serves_label.setText(tr("lot.serves.no", step=step,
                                    steps=", ".join(station_steps) or "—"))
            serves_label.setStyleSheet("color: #b00020; font-weight: bold;")
        self.note.setText(tr("lot.cached", when=time.strftime("%H:%M", time.localtime(cached_at)))
                          if cached_at else "")
        self.note.setVisible(bool(cached_at))
