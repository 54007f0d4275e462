"""Login and settings dialogs; both are opened non-blocking (``open()``) and answer by signal."""
from __future__ import annotations

import dataclasses

from ..config import LANGUAGES, SCANNER_MODES, StationConfig
from ..i18n import tr
from ..qt import (QComboBox, QDialog, QFont, QFormLayout, QLabel, QLineEdit, QPushButton,
                  QVBoxLayout, Signal)

MIN_WIDTH = 460  # long messages wrap into a few lines, not a narrow column


def _big(widget, size: int = 14):
    font = QFont()
    font.setPointSize(size)
    widget.setFont(font)
    widget.setMinimumHeight(40)
    return widget


class LoginDialog(QDialog):
    """Username + password; a badge scan fills the username."""

    submitted = Signal(str, str)

    def __init__(self, parent=None, badge_prefix: str = ""):
        super().__init__(parent)
        self.badge_prefix = badge_prefix
        self.setWindowTitle(tr("login.title"))
        self.setObjectName("loginDialog")
        layout = QVBoxLayout(self)
        self.setMinimumWidth(MIN_WIDTH)
        layout.addWidget(QLabel(tr("login.badge_hint")))
        form = QFormLayout()
        self.username = _big(QLineEdit())
        self.username.setObjectName("username")
        self.password = _big(QLineEdit())
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.Password)
        form.addRow(tr("login.username"), self.username)
        form.addRow(tr("login.password"), self.password)
        layout.addLayout(form)
        self.message = QLabel("")
        self.message.setObjectName("loginMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.button = _big(QPushButton(tr("login.button")))
        self.button.setObjectName("loginButton")
        self.button.setDefault(True)
        self.button.clicked.connect(self._submit)
        self.password.returnPressed.connect(self._submit)
        self.username.returnPressed.connect(self.password.setFocus)
        layout.addWidget(self.button)

    def _submit(self) -> None:
        name, password = self.username.text().strip(), self.password.text()
        if name and password:
            self.button.setEnabled(False)
            self.message.setText("…")
            self.submitted.emit(name, password)

    def _say(self, message: str) -> None:
        self.message.setText(message)
        self.adjustSize()  # a longer message needs a taller dialog, never squeezed rows

    def accept_scan(self, text: str) -> None:
        """A badge was scanned: fill the username, move to the password."""
        if self.badge_prefix and not text.startswith(self.badge_prefix):
            return
        self.username.setText(text[len(self.badge_prefix):])
        self.password.setFocus()

    def reset(self, message: str = "") -> None:
        """Ready for a (new) operator: message shown, password cleared, cursor in Username."""
        self._say(message)
        self.password.clear()
        self.button.setEnabled(True)
        self.username.selectAll()  # typing replaces the last operator's name
        self.username.setFocus()

    def failed(self, message: str) -> None:
        """Show why the login did not work and let the operator try again."""
        self._say(message)
        self.password.clear()
        self.button.setEnabled(True)
        (self.password if self.username.text().strip() else self.username).setFocus()


class SettingsDialog(QDialog):
    """Edit the station configuration (shown on first run when nothing is configured)."""

    saved = Signal(object)

    TEXT_FIELDS = ("server", "station", "scanner_port", "scanner_terminator", "gs_substitute",
                   "printer_uri", "data_dir")

    def __init__(self, cfg: StationConfig, parent=None):
        super().__init__(parent)
        self.cfg = cfg
        self.setWindowTitle(tr("settings.title"))
        self.setObjectName("settingsDialog")
        layout = QVBoxLayout(self)
        self.setMinimumWidth(MIN_WIDTH)
        form = QFormLayout()
        self.edits: dict[str, QLineEdit] = {}
        for name in self.TEXT_FIELDS[:2]:
            self._text_row(form, name)
        self.mode = QComboBox()
        for m in SCANNER_MODES:
            self.mode.addItem(tr(f"scanner_mode.{m}"), m)
        self.mode.setCurrentIndex(SCANNER_MODES.index(cfg.scanner_mode)
                                  if cfg.scanner_mode in SCANNER_MODES else 0)
        form.addRow(tr("settings.scanner_mode"), self.mode)
        self._text_row(form, "scanner_port")
        self.baud = QLineEdit(str(cfg.scanner_baud))
        form.addRow(tr("settings.scanner_baud"), self.baud)
        for name in self.TEXT_FIELDS[3:]:
            self._text_row(form, name)
        self.language = QComboBox()
        for lang in LANGUAGES:
            self.language.addItem(tr(f"language.{lang}"), lang)
        self.language.setCurrentIndex(LANGUAGES.index(cfg.language)
                                      if cfg.language in LANGUAGES else 0)
        form.addRow(tr("settings.language"), self.language)
        layout.addLayout(form)
        self.message = QLabel("")
        self.message.setObjectName("settingsMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.save_button = _big(QPushButton(tr("settings.save")))
        self.save_button.setObjectName("saveSettings")
        self.save_button.clicked.connect(self._save)
        layout.addWidget(self.save_button)

    def _text_row(self, form: QFormLayout, name: str) -> None:
        edit = QLineEdit(str(getattr(self.cfg, name)))
        edit.setObjectName(f"setting_{name}")
        self.edits[name] = edit
        form.addRow(tr(f"settings.{name}"), edit)

    def result_config(self) -> StationConfig:
        """The configuration as currently entered."""
        values = {name: edit.text().strip() for name, edit in self.edits.items()}
        try:
            baud = int(self.baud.text().strip())
        except ValueError:
            baud = self.cfg.scanner_baud
        return dataclasses.replace(self.cfg, **values, scanner_baud=baud,
                                   scanner_mode=self.mode.currentData(),
                                   language=self.language.currentData())

    def _save(self) -> None:
        cfg = self.result_config()
        problems = cfg.problems()
        if problems:
            self.message.setText(tr("settings.invalid",
                                    problems="; ".join(p for _, p in problems)))
            self.adjustSize()  # a longer message needs a taller dialog, never squeezed rows
            return
        self.saved.emit(cfg)
        self.accept()
