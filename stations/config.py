"""Station configuration: an INI file, overridden field by field by NEUROHUB_* variables.

The INI lives in the user's config folder (``$XDG_CONFIG_HOME/neurohub/station.ini``, on Windows
``%APPDATA%\\NeuroHub\\station.ini``) unless ``NEUROHUB_STATION_CONFIG`` names another file. The
environment wins over the file so a line PC image can be pinned centrally while the first-run
dialog still works on a fresh PC.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

SECTION = "station"
SCANNER_MODES = ("wedge", "serial", "none")
LANGUAGES = ("ko", "en")


@dataclass
class StationConfig:
    """Everything one station PC needs to know; defaults suit a wedge scanner and Korean UI."""

    server: str = ""
    station: str = ""
    scanner_mode: str = "wedge"
    scanner_port: str = ""
    scanner_baud: int = 9600
    scanner_terminator: str = "\\r"   # escaped as typed in the INI: \r, \n, \r\n, \t
    gs_substitute: str = ""           # printable stand-in for GS (0x1d) that a wedge types
    badge_prefix: str = ""            # badges start with this; empty = any scan at login
    printer_uri: str = ""             # local printer for station:// jobs (tcp://, file://, sim://)
    language: str = "ko"
    data_dir: str = ""
    idle_timeout_min: float = 15.0
    heartbeat_s: float = 30.0
    probe_s: float = 2.0              # how often an idle station checks the server is there
    request_timeout_s: float = 5.0
    label_poll_s: float = 2.0
    wedge_max_gap_ms: float = 35.0
    wedge_min_length: int = 4

    @property
    def terminator(self) -> bytes:
        """The serial terminator as bytes (the INI stores it escaped)."""
        return unescape(self.scanner_terminator).encode("latin-1") or b"\r"

    @property
    def data_path(self) -> Path:
        """The data folder (queue, caches, firmware), created on demand."""
        path = Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_complete(self) -> bool:
        """True when the app can start without the first-run settings dialog."""
        return not self.problems()

    def problems(self) -> list[tuple[str, str]]:
        """(field, problem) pairs; empty when the configuration is usable."""
        out = []
        parts = urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            out.append(("server", "server must be an http:// or https:// URL"))
        if not self.station.strip():
            out.append(("station", "station code is required"))
        if self.scanner_mode not in SCANNER_MODES:
            out.append(("scanner_mode", f"scanner mode must be one of {', '.join(SCANNER_MODES)}"))
        if self.scanner_mode == "serial" and not self.scanner_port:
            out.append(("scanner_port", "a serial scanner needs a port"))
        if self.language not in LANGUAGES:
            out.append(("language", f"language must be one of {', '.join(LANGUAGES)}"))
        if self.printer_uri and not self.printer_uri.startswith(("tcp://", "file://", "sim://")):
            out.append(("printer_uri", "local printer must be tcp://, file:// or sim://"))
        return out


# field -> environment variable; the names operators set in a PC image or a shortcut
ENV_VARS = {
    "server": "NEUROHUB_SERVER", "station": "NEUROHUB_STATION",
    "scanner_mode": "NEUROHUB_SCANNER", "scanner_port": "NEUROHUB_SCANNER_PORT",
    "scanner_baud": "NEUROHUB_SCANNER_BAUD", "scanner_terminator": "NEUROHUB_SCANNER_TERMINATOR",
    "gs_substitute": "NEUROHUB_GS_SUBSTITUTE", "badge_prefix": "NEUROHUB_BADGE_PREFIX",
    "printer_uri": "NEUROHUB_PRINTER", "language": "NEUROHUB_LANG",
    "data_dir": "NEUROHUB_STATION_DIR", "idle_timeout_min": "NEUROHUB_IDLE_MINUTES",
    "heartbeat_s": "NEUROHUB_HEARTBEAT_SECONDS", "request_timeout_s": "NEUROHUB_HTTP_TIMEOUT",
    "label_poll_s": "NEUROHUB_LABEL_POLL_SECONDS",
}


def unescape(text: str) -> str:
    """Turn the INI spelling of control characters (``\\r``, ``\\x1d``) into the characters."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user configuration folder."""
    env = os.environ if environ is None else environ
    if sys.platform.startswith("win") and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "NeuroHub"
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "neurohub"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user data folder for the queue, caches and firmware."""
    env = os.environ if environ is None else environ
    if sys.platform.startswith("win") and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "NeuroHub" / "station"
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "neurohub-station"


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the INI is read from and saved to."""
    env = os.environ if environ is None else environ
    if env.get("NEUROHUB_STATION_CONFIG"):
        return Path(env["NEUROHUB_STATION_CONFIG"]).expanduser()
    return config_dir(env) / "station.ini"


def _convert(field: dataclasses.Field, raw: str):
    kind = field.type if isinstance(field.type, type) else {"int": int, "float": float}.get(
        str(field.type), str)
    return kind(raw.strip()) if kind in (int, float) else raw


def load(path: Path | str | None = None, environ: Mapping[str, str] | None = None
         ) -> tuple[StationConfig, dict[str, str]]:
    """Read the INI (if any) then the environment; returns (config, field -> source)."""
    env = os.environ if environ is None else environ
    path = Path(path) if path else default_path(env)
    cfg, sources = StationConfig(), {}
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        parser.read(path, encoding="utf-8")
    section = parser[SECTION] if parser.has_section(SECTION) else {}
    for f in fields(StationConfig):
        for raw, source in ((section.get(f.name), str(path)), (env.get(ENV_VARS.get(f.name, "")),
                                                                 ENV_VARS.get(f.name))):
            if raw is None or (source != str(path) and raw == ""):
                continue
            try:
                setattr(cfg, f.name, _convert(f, raw))
                sources[f.name] = source
            except ValueError:
                # A typo in one number must not stop the line: keep the default, say where.
                sources[f.name] = f"default (bad value {raw!r} in {source})"
    return cfg, sources


def save(cfg: StationConfig, path: Path | str | None = None) -> Path:
    """Write the configuration to the INI atomically (temp file + rename)."""
    path = Path(path) if path else default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    parser = configparser.ConfigParser(interpolation=None)
    parser[SECTION] = {f.name: str(getattr(cfg, f.name)) for f in fields(StationConfig)}
    tmp = path.with_suffix(".ini.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        parser.write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path
