"""Widgets of the station app: main window, lot panel, measurement form, dialogs."""
from .dialogs import LoginDialog, SettingsDialog
from .fonts import setup_fonts, supports_hangul
from .main_window import MainWindow

__all__ = ["LoginDialog", "MainWindow", "SettingsDialog", "setup_fonts", "supports_hangul"]
