"""``neurohub-station``: start the operator app (settings on first run, login, main window)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.handlers
import sys

from . import config as config_mod
from .i18n import set_language, tr
from .qt import QApplication
from .station import StationContext
from .ui import MainWindow, SettingsDialog, setup_fonts

log = logging.getLogger("stations")
RESTART_FIELDS = ("server", "station", "scanner_mode", "scanner_port", "scanner_baud",
                  "scanner_terminator", "printer_uri", "data_dir")


def _logging(cfg: config_mod.StationConfig) -> None:
    handler = logging.handlers.RotatingFileHandler(cfg.data_path / "station.log",
                                                   maxBytes=2_000_000, backupCount=3,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class StationApp:
    """Owns the window; rebuilds it when settings that need a new connection change."""

    def __init__(self, app: QApplication, cfg: config_mod.StationConfig, config_path):
        self.app, self.cfg, self.config_path = app, cfg, config_path
        self.window: MainWindow | None = None
        self.settings: SettingsDialog | None = None

    def start(self) -> MainWindow:
        """Build the context and window, show it and ask for a login."""
        set_language(self.cfg.language)
        self.window = MainWindow(StationContext(self.cfg))
        self.window.settings_button.clicked.connect(self.open_settings)
        self.window.showMaximized()
        self.window.show_login()
        return self.window

    def open_settings(self) -> SettingsDialog:
        """Show the settings dialog over the main window."""
        self.settings = SettingsDialog(self.cfg, self.window)
        self.settings.saved.connect(self.apply)
        self.settings.open()
        return self.settings

    def apply(self, cfg: config_mod.StationConfig) -> None:
        """Save new settings; a language change is live, a new server or device restarts."""
        old, self.cfg = self.cfg, cfg
        config_mod.save(cfg, self.config_path)
        set_language(cfg.language)
        if any(getattr(old, f) != getattr(cfg, f) for f in RESTART_FIELDS):
            self.window.close()  # stops workers; the queue is already on disk
            self.start()
        else:
            self.window.ctx.cfg = cfg
            self.window.retranslate()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (each one overrides the INI and the environment)."""
    p = argparse.ArgumentParser(prog="neurohub-station", description=__doc__)
    p.add_argument("--config", help="INI file (default: the per-user station.ini)")
    p.add_argument("--server", help="server URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--station", help="station code, e.g. ST-05")
    p.add_argument("--lang", choices=config_mod.LANGUAGES)
    p.add_argument("--data-dir", help="queue, cache and firmware folder")
    p.add_argument("--settings", action="store_true", help="open the settings dialog first")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the station app until its window is closed."""
    args = parse_args(argv)
    path = config_mod.default_path() if not args.config else args.config
    cfg, _sources = config_mod.load(path)
    overrides = {"server": args.server, "station": args.station, "language": args.lang,
                 "data_dir": args.data_dir}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v})
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("neurohub-station")
    setup_fonts(app)
    set_language(cfg.language if cfg.language in config_mod.LANGUAGES else "ko")
    if args.settings or not cfg.is_complete():
        dialog = SettingsDialog(cfg)  # first run: nothing works without server + station
        dialog.setWindowTitle(tr("settings.title"))
        saved = []
        dialog.saved.connect(saved.append)
        if not dialog.exec_() or not saved:
            return 1
        cfg = saved[0]
        config_mod.save(cfg, path)
    _logging(cfg)
    station = StationApp(app, cfg, path)
    station.start()
    code = app.exec_()
    if station.window is not None:
        station.window.shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
