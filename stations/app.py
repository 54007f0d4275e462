"""``neurohub-station``: start the operator app (settings on first run, login, main window)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.handlers
import sys
from pathlib import Path

from . import config as config_mod
from .i18n import set_language, tr
from .qt import QApplication
from .station import StationContext
from .threads import MainThreadGC
from .ui import MainWindow, SettingsDialog, setup_fonts

log = logging.getLogger("stations")
RESTART_FIELDS = ("server", "station", "scanner_mode", "scanner_port", "scanner_baud",
                  "scanner_terminator", "printer_uri", "data_dir")


LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"
_log_handler: logging.Handler | None = None


def setup_logging(data_path: Path) -> logging.Handler:
    """Log the station's events to ``station.log`` in its data folder (rotating, 4 x 2 MB).

    Calling it again (a new data folder) moves the log; the previous file handler is closed.
    """
    global _log_handler
    handler = logging.handlers.RotatingFileHandler(Path(data_path) / "station.log",
                                                   maxBytes=2_000_000, backupCount=3,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    if _log_handler is not None:
        root.removeHandler(_log_handler)
        _log_handler.close()
    root.addHandler(handler)
    logging.getLogger("stations").setLevel(logging.INFO)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)  # libraries: warnings and errors only
    _log_handler = handler
    sys.excepthook = _log_uncaught
    return handler


def _log_uncaught(kind, value, trace) -> None:
    # PyQt5 aborts on an exception escaping a slot; the log keeps why the app stopped.
    log.critical("uncaught exception", exc_info=(kind, value, trace))
    sys.__excepthook__(kind, value, trace)


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
            if old.data_dir != cfg.data_dir:
                setup_logging(cfg.data_path)
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
    collector = MainThreadGC(parent=app)  # before any background thread starts
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
    setup_logging(cfg.data_path)
    log.info("neurohub-station starting: station %s, server %s, scanner %s %s",
             cfg.station, cfg.server, cfg.scanner_mode, cfg.scanner_port)
    station = StationApp(app, cfg, path)
    station.start()
    code = app.exec_()
    if station.window is not None:
        station.window.shutdown()
    collector.stop()
    log.info("neurohub-station stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
