"""Recording out-of-limits values takes a deliberate second press of Complete, never a double click.

The first press warns and relabels the button; the button then stays disabled for
``CONFIRM_GUARD_MS``, so the second click of a double click (or a gloved press that bounces)
lands on a disabled button. No modal dialog: it would take the focus from the scan field (the
next scan's Enter would press the dialog's default button) and its small buttons are hard to hit
with gloves; the confirmation is the same big button, pressed again once it lights up.
"""
from __future__ import annotations

from ..i18n import tr
from ..qt import QObject, QPushButton, QTimer, Signal
from .measurement_form import MeasurementForm

CONFIRM_GUARD_MS = 1000  # longer than a double click or a bounce, short for a deliberate press


class OutOfLimitsConfirm(QObject):
    """The out-of-limits confirmation state of the Complete button."""

    changed = Signal()  # the button may become usable: re-evaluate it

    def __init__(self, button: QPushButton, form: MeasurementForm, parent=None):
        super().__init__(parent)
        self.button = button
        self.armed = False
        self.guard = QTimer(self)
        self.guard.setSingleShot(True)
        self.guard.setInterval(CONFIRM_GUARD_MS)
        self.guard.timeout.connect(self.changed)
        form.edited.connect(self._edited)

    @property
    def waiting(self) -> bool:
        """True during the pause after the warning, when a press must not confirm."""
        return self.guard.isActive()

    def confirmed(self) -> bool:
        """True when this press is a confirmation: warned before, and after the pause."""
        return self.armed and not self.waiting

    def arm(self) -> None:
        """The warning is on screen: relabel the button and hold it for the pause."""
        self.armed = True
        self.button.setText(self.label())
        self.button.setEnabled(False)
        self.guard.start()

    def reset(self) -> None:
        """Back to a plain Complete (new item, values changed, or the completion was saved)."""
        self.armed = False
        self.guard.stop()
        self.button.setText(self.label())

    def label(self) -> str:
        """The button's text in the current language and state."""
        return tr("complete.button_confirm" if self.armed else "complete.button")

    def _edited(self) -> None:
        # A confirmation stands for the values that were warned about, not for new ones.
        if self.armed:
            self.reset()
            self.changed.emit()
