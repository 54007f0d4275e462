"""The label font for the station's own printer: fetched from the server, kept in the data folder.

Every label the server renders names its TrueType font (``^CWK,E:NH1A2B3C.TTF``, see
printers.fonts). For ``station://`` printers the server never talks to the printer, so the
station stores that font on it (``printers.ensure_font``: ``~DY`` unless ``^HW`` lists it).
The font comes from ``GET /api/v1/labels/font`` (ETag = the file's sha256) and is cached as
``<data>/fonts/<sha256>.ttf``. A printer name is derived from the sha256, so a cached file whose
name a job uses is the right font: the server is asked (``If-None-Match``, mostly a 304) only
when a job names a font the cache lacks, e.g. after the server's ``LABEL_FONT`` changed.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from printers import FontError, LabelFont
from printers.fonts import check_truetype

from ..api_client import ApiClient

log = logging.getLogger(__name__)
_NAMED = re.compile(rb"\^CW[A-Za-z0-9]\s*,\s*([A-Za-z]:[A-Za-z0-9_]{1,8}\.TTF)", re.I)
_SHA = re.compile(r"^[0-9a-f]{64}$")
KEEP = 3  # fonts kept on disk: the current one and a few before it, for jobs still queued


def named_fonts(zpl: bytes) -> list[str]:
    """The TrueType fonts a job's labels name with ``^CW`` (``E:NAME.TTF``), in order, once."""
    return list(dict.fromkeys(m.group(1).decode("ascii").upper() for m in _NAMED.finditer(zpl)))


def _etag(value: str | None) -> str | None:
    value = (value or "").strip()
    value = value[2:] if value.startswith("W/") else value
    return value.strip('"').lower() or None


class FontCache:
    """Label fonts by printer path, from ``directory`` or else from the server."""

    def __init__(self, api: ApiClient, directory: Path | str):
        self.api, self.directory = api, Path(directory)
        self._fonts: dict[str, LabelFont] = {}   # printer path -> font read and checked
        self.fetches = 0                          # 200 answers: font bytes downloaded

    def _files(self) -> list[Path]:
        """Cached fonts, newest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.glob("*.ttf") if _SHA.match(p.stem)]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def _load(self, path: Path) -> LabelFont | None:
        try:
            data = path.read_bytes()
            check_truetype(data, str(path))
        except (OSError, FontError) as exc:
            log.warning("label font cache: %s unusable: %s", path, exc)
            return None
        font = LabelFont(data, str(path))
        if font.sha256 != path.stem:  # truncated or altered on disk: fetch it again
            log.warning("label font cache: %s does not match its sha256; ignored", path)
            return None
        self._fonts[font.path] = font
        return font

    def cached(self, printer_path: str) -> LabelFont | None:
        """The font a job names, if this station has it (memory, then disk)."""
        printer_path = printer_path.upper()
        if printer_path in self._fonts:
            return self._fonts[printer_path]
        for file in self._files():
            if f"E:NH{file.stem[:6].upper()}.TTF" == printer_path:
                return self._load(file)
        return None

    def get(self, printer_path: str) -> LabelFont | None:
        """The font a job names: cached, or fetched now; None if the server serves another.

        Raises Offline / NotLoggedIn / ApiError when the server cannot be asked, and FontError
        when its answer is not the TrueType file its ETag names.
        """
        font = self.cached(printer_path)
        if font is None:
            font = self.refresh()
        return font if font.path == printer_path.upper() else None

    def refresh(self) -> LabelFont:
        """The font the server serves now: revalidated with If-None-Match, downloaded if new."""
        files = self._files()
        current = _etag(files[0].stem) if files else None
        data, etag = self.api.label_font(current)
        if data is None:  # 304: the newest cached font is still the server's
            font = self.cached(f"E:NH{current[:6].upper()}.TTF")
            if font is not None:
                return font
            data, etag = self.api.label_font(None)  # the cached file was unusable
        self.fetches += 1
        sha = hashlib.sha256(data).hexdigest()
        if _etag(etag) != sha:
            raise FontError(f"label font download does not match its ETag ({etag!r}); "
                            "will retry")
        check_truetype(data, "label font from the server")
        try:
            self._store(sha, data)
        except OSError as exc:  # a full or read-only disk must not stop printing
            log.warning("label font cache: cannot store %s: %s", sha, exc)
        font = LabelFont(data, str(self.directory / f"{sha}.ttf"))
        self._fonts[font.path] = font
        log.info("label font %s (%d bytes) fetched from the server", font.path, len(data))
        return font

    def _store(self, sha: str, data: bytes) -> None:
        """Write ``<sha>.ttf`` atomically and drop all but the newest KEEP files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".font-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.directory / f"{sha}.ttf")
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        for old in self._files()[KEEP:]:
            try:
                old.unlink()
            except OSError:
                pass
