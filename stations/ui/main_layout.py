"""The main window's widgets and layout (built once; texts are set by ``retranslate``)."""
from __future__ import annotations

from ..qt import (QFont, QFrame, QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton,
                  QScrollArea, Qt, QVBoxLayout, QWidget)
from .firmware_panel import FirmwarePanel
from .fit_label import FitLabel
from .lot_panel import LotPanel
from .measurement_form import MeasurementForm


def font(size: int, bold: bool = False) -> QFont:
    """A font of the given point size."""
    f = QFont()
    f.setPointSize(size)
    f.setBold(bold)
    return f


def setup_ui(window) -> None:
    """Create the main window's widgets as attributes of ``window`` and lay them out."""
    # Widgets are made and join the window top to bottom: Qt's default tab order follows that.
    root = QWidget()
    outer = QVBoxLayout(root)
    outer.addLayout(_top_bar(window))
    middle = QHBoxLayout()
    middle.addWidget(_left_column(window), 3)
    middle.addLayout(_right_column(window), 2)
    outer.addLayout(middle, 1)
    outer.addWidget(_complete_button(window))
    window.setCentralWidget(root)
    _status_bar(window)


def _top_bar(window) -> QHBoxLayout:
    """The scan title and field, settings and logout."""
    top = QHBoxLayout()
    window.scan_title = QLabel()
    window.scan_field = QLineEdit()
    window.scan_field.setObjectName("scanField")
    window.scan_field.setProperty("scanField", True)
    window.scan_field.setMinimumHeight(48)
    window.scan_field.setFont(font(18))
    window.settings_button = QPushButton()
    window.logout_button = QPushButton()
    for w in (window.scan_title, window.scan_field, window.settings_button, window.logout_button):
        top.addWidget(w)
    return top


def _left_column(window) -> QScrollArea:
    """Lot panel, measurement form and firmware panel, in a vertically scrolling area."""
    # The left column scrolls rather than squeezing its rows when a step needs more room
    # than the screen has (many measurements plus the firmware panel on a small screen).
    left_area = QScrollArea()
    left_area.setObjectName("leftArea")
    left_area.setFrameShape(QFrame.NoFrame)
    left_area.setWidgetResizable(True)
    left_area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    left_box = QWidget()
    left = QVBoxLayout(left_box)
    left.setContentsMargins(0, 0, 0, 0)
    window.lot_panel = LotPanel()
    window.form = MeasurementForm()
    window.firmware_panel = FirmwarePanel(window.ctx.firmware)
    window.firmware_panel.setVisible(False)
    left.addWidget(window.lot_panel)
    left.addWidget(window.form)
    left.addWidget(window.firmware_panel)
    left.addStretch(1)
    left_area.setWidget(left_box)
    return left_area


def _right_column(window) -> QVBoxLayout:
    """The result message over the history of decisions."""
    right = QVBoxLayout()
    window.result_label = FitLabel(max_pt=18, min_pt=10, max_height=330)
    window.result_label.setObjectName("resultLabel")
    window.result_label.setMinimumHeight(120)
    window.history = QListWidget()
    window.history.setObjectName("history")
    window.history.setWordWrap(True)  # a long line wraps instead of hiding behind a scrollbar
    window.history.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    window.results_title = QLabel()
    right.addWidget(window.result_label)
    right.addWidget(window.results_title)
    right.addWidget(window.history, 1)
    return right


def _complete_button(window) -> QPushButton:
    """The big Complete button (disabled until an item can be completed)."""
    window.complete_button = QPushButton()
    window.complete_button.setObjectName("completeButton")
    window.complete_button.setMinimumHeight(76)
    window.complete_button.setFont(font(26, bold=True))
    window.complete_button.setStyleSheet("QPushButton { background: #1565c0; color: white; }"
                                         "QPushButton:disabled { background: #9e9e9e; }")
    window.complete_button.setEnabled(False)
    return window.complete_button


def _status_bar(window) -> None:
    """Network, user, printer and scanner states in the status bar."""
    bar = window.statusBar()
    window.net_label, window.user_label = QLabel(), QLabel()
    window.printer_label, window.scanner_label = QLabel(), QLabel()
    window.net_label.setObjectName("netStatus")
    window.printer_label.setObjectName("printerStatus")
    # Long states (a queue waiting for another operator, several printer faults) wrap onto
    # a second line instead of being cut at 1024 px.
    for w, stretch in ((window.net_label, 3), (window.user_label, 0), (window.printer_label, 2),
                       (window.scanner_label, 0)):
        w.setFont(font(12))
        w.setWordWrap(bool(stretch))
        bar.addPermanentWidget(w, stretch)
