"""The measurement form, generated from the step's spec; each value is coloured as it is typed."""
from __future__ import annotations

import math

from ..i18n import tr
from ..qt import QFont, QGridLayout, QLabel, QLineEdit, QWidget, Signal

COLOURS = {"ok": "#c8f7c5", "out": "#ffb3b3", "bad": "#ffd59e", "empty": "#ffffff"}


def parse_number(text: str) -> float | None:
    """A typed number (decimal comma accepted); None when it is not a finite number."""
    text = text.strip().replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def judge(spec: dict, text: str) -> str:
    """``empty`` / ``bad`` (not a number) / ``out`` (outside limits) / ``ok``."""
    if not text.strip():
        return "empty"
    value = parse_number(text)
    if value is None:
        return "bad"
    lo, hi = spec.get("min"), spec.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return "out"
    return "ok"


def _fmt(v) -> str:
    return "" if v is None else f"{v:g}"


def _limits_text(spec: dict) -> str:
    """'3.2 … 3.4 V', or 'no limits (V)'."""
    lo, hi, unit = spec.get("min"), spec.get("max"), spec.get("unit") or ""
    if lo is None and hi is None:
        return tr("form.no_limits") + (f" ({unit})" if unit else "")
    return tr("form.limits", min=_fmt(lo) or "-∞", max=_fmt(hi) or "∞", unit=unit)


class MeasurementForm(QWidget):
    """One row per measurement spec: name (unit), value field, limits, verdict."""

    edited = Signal()  # a value was typed, changed or cleared

    def __init__(self, parent=None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.specs: list[dict] = []
        self.fields: dict[str, QLineEdit] = {}
        self.verdicts: dict[str, QLabel] = {}
        self._empty = QLabel(tr("form.none"))
        self.grid.addWidget(self._empty, 0, 0)

    def set_specs(self, specs: list[dict]) -> None:
        """Rebuild the rows for a step's measurement specs."""
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None and w is not self._empty:
                w.deleteLater()
        self.specs, self.fields, self.verdicts = list(specs), {}, {}
        self._empty.setText(tr("form.none"))
        self._empty.setVisible(not specs)
        self.grid.addWidget(self._empty, 0, 0)
        big = QFont()
        big.setPointSize(16)
        # The verdict column is as wide as its longest text in this language, no wider: long
        # measurement names must fit the left column at 1024 x 768.
        metrics = self.fontMetrics()
        verdict_width = max(metrics.horizontalAdvance(tr(k)) for k in (
            "form.in_limits", "form.out_of_limits", "form.not_number")) + 4
        for row, spec in enumerate(specs, start=1):
            name = spec["name"]
            label = QLabel(name)  # the unit is in the limits column
            label.setFont(big)
            field = QLineEdit()
            field.setObjectName(f"measure_{name}")
            field.setFont(big)
            field.setMinimumHeight(44)
            limits = _limits_text(spec)
            verdict = QLabel("")
            verdict.setMinimumWidth(verdict_width)
            field.textChanged.connect(lambda text, s=spec: self._colour(s, text))
            field.textChanged.connect(lambda _text: self.edited.emit())
            self.grid.addWidget(label, row, 0)
            self.grid.addWidget(field, row, 1)
            self.grid.addWidget(QLabel(limits), row, 2)
            self.grid.addWidget(verdict, row, 3)
            self.fields[name], self.verdicts[name] = field, verdict
            self._colour(spec, "")

    def _colour(self, spec: dict, text: str) -> None:
        state = judge(spec, text)
        field, verdict = self.fields[spec["name"]], self.verdicts[spec["name"]]
        field.setProperty("verdict", state)
        field.setStyleSheet(f"QLineEdit {{ background: {COLOURS[state]}; }}")
        verdict.setText({"ok": tr("form.in_limits"), "out": tr("form.out_of_limits"),
                         "bad": tr("form.not_number"), "empty": ""}[state])

    def state(self, name: str) -> str:
        """The current verdict of one field (for tests and the Complete check)."""
        return self.fields[name].property("verdict")

    def clear(self) -> None:
        """Empty every value (next unit)."""
        for field in self.fields.values():
            field.clear()

    def collect(self) -> tuple[dict, list[str], list[str]]:
        """(values, errors, out_of_limits): errors block completing, out-of-limits warns."""
        values, errors, out = {}, [], []
        for spec in self.specs:
            name, text = spec["name"], self.fields[spec["name"]].text()
            state = judge(spec, text)
            if state == "empty":
                if spec.get("required", True):
                    errors.append(tr("error.missing", name=name))
                continue
            if state == "bad":
                errors.append(tr("error.not_number", name=name, value=text.strip()))
                continue
            values[name] = parse_number(text)
            if state == "out":
                out.append(name)
        return values, errors, out
