"""The simulated printer's state machine, shared by ``sim://`` (in-process) and the TCP simulator.

Semantics (chosen to make driver bugs visible, documented here once):
- ``~HS`` is answered with the three framed strings reflecting the faults, as old and current
  Zebra firmware does; ``silent_when_faulted=True`` instead mimics firmware that stays silent
  in MEDIA OUT / RIBBON OUT / HEAD OPEN.
- A label received while ``paper_out``/``head_open``/``paused``/``ribbon_out`` is set is
  DISCARDED and noted (a real printer would buffer it and print it once the fault clears); the
  server never sends while the status is not ready, so a discarded label is a driver bug.
- ``offline``: connections are accepted but ``~HS`` is never answered and all data is dropped.
- ``down``: the device is unreachable (the TCP simulator closes its listener).
- ``~DY`` TrueType downloads are stored by name (``E:NAME.TTF``, counted per name) and used when
  rendering later labels, as a printer's flash would; ``^HW`` (in a format of its own, which is
  a query and prints nothing) is answered with a directory listing of the stored files.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .fonts import FontError, directory_listing, parse_download
from .status import format_host_status
from .stream import ZplStream

_HOST_QUERY = re.compile(rb"\^HW([^\^~]*)", re.I)
PRINT_FAULTS = ("paper_out", "head_open", "paused", "ribbon_out")
FAULTS = PRINT_FAULTS + ("offline", "down")


@dataclass
class SimLabel:
    """One label the simulator printed (stored as ``NNNNNN.zpl`` / ``.png`` when it has a dir)."""

    index: int
    zpl: bytes
    connection: int = 0
    received_at: float = 0.0
    zpl_path: str | None = None
    png_path: str | None = None
    png: bytes | None = None          # kept in memory only when there is no out_dir
    render_error: str | None = None
    adaptations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no bytes)."""
        return {"index": self.index, "bytes": len(self.zpl), "connection": self.connection,
                "received_at": self.received_at, "zpl_path": self.zpl_path,
                "png_path": self.png_path, "rendered": self.png is not None or
                bool(self.png_path), "render_error": self.render_error,
                "adaptations": self.adaptations}


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class SimulatedPrinter:
    """Zebra-like printer state: faults, ``~HS`` answers, label intake and storage (thread-safe)."""

    def __init__(self, name: str = "default", out_dir: str | None = None, dpi: int = 203,
                 render: bool = False, keep: int = 1000, silent_when_faulted: bool = False):
        self.name, self.out_dir, self.dpi, self.render = name, out_dir, dpi, render
        self.silent_when_faulted = silent_when_faulted
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._faults: set[str] = set()
        self._labels: deque[SimLabel] = deque(maxlen=keep)
        self._next_index = 1
        self.label_count = 0
        self.discarded_count = 0
        self.notes: deque[str] = deque(maxlen=200)
        self.control_commands: deque[str] = deque(maxlen=200)
        self._files: dict[str, bytes] = {}
        self.downloads: dict[str, int] = {}  # ~DY downloads received, per stored name
        self._observers: list = []

    # -- faults ---------------------------------------------------------------------------
    @property
    def faults(self) -> list[str]:
        """The faults currently set, sorted."""
        with self._lock:
            return sorted(self._faults)

    def is_set(self, fault: str) -> bool:
        """True when ``fault`` is currently set."""
        with self._lock:
            return fault in self._faults

    def set_fault(self, name: str, on: bool = True) -> None:
        """Switch a fault on (or off); ``name`` must be one of FAULTS."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; expected one of {', '.join(FAULTS)}")
        with self._lock:
            (self._faults.add if on else self._faults.discard)(name)
        self._notify()

    def clear_faults(self) -> None:
        """Clear every fault (paper loaded, head closed, unpaused, online, powered)."""
        with self._lock:
            self._faults.clear()
        self._notify()

    def observe(self, callback) -> None:
        """Call ``callback(self)`` after each fault change (the TCP simulator's listener)."""
        self._observers.append(callback)

    def _notify(self) -> None:
        for callback in list(self._observers):
            callback(self)

    # -- status ---------------------------------------------------------------------------
    def host_status(self) -> bytes | None:
        """The ``~HS`` answer, or None when the printer would not answer."""
        with self._lock:
            faults = set(self._faults)
        if faults & {"offline", "down"}:
            return None
        if self.silent_when_faulted and faults & {"paper_out", "ribbon_out", "head_open"}:
            return None
        return format_host_status(
            paper_out="paper_out" in faults, paused="paused" in faults,
            head_open="head_open" in faults, ribbon_out="ribbon_out" in faults,
            label_length_dots=round(6 * self.dpi))

    # -- intake ---------------------------------------------------------------------------
    def open_stream(self) -> ZplStream:
        """A framer for one connection: labels never mix across connections."""
        return ZplStream()

    def receive(self, stream: ZplStream, data: bytes, connection: int = 0) -> list[bytes]:
        """Process bytes from one connection; returns the ``~HS`` answers to send back."""
        if self.is_set("offline") or self.is_set("down"):
            return []  # an offline printer drops what it is sent
        answers = []
        for event in stream.feed(data):
            if event.kind == "control":
                self.control_commands.append(event.name)
                if event.name == "DY":
                    self._store_download(event.data, connection)
                elif event.name == "HS":
                    answer = self.host_status()
                    if answer is not None:
                        answers.append(answer)
            elif event.kind == "label":
                query = _HOST_QUERY.search(event.data)
                if query:  # a directory query, not a label: answered whatever the faults
                    answers.append(self.directory(query.group(1).decode("ascii", "replace")))
                else:
                    self._accept(event.data, connection)
            else:
                self._note(f"connection {connection}: label larger than "
                           f"{stream.max_label_bytes} bytes discarded")
        return answers

    def _store_download(self, command: bytes, connection: int) -> None:
        try:
            path, data = parse_download(command)
        except FontError as exc:  # a printer ignores a download it cannot use
            self._note(f"connection {connection}: ~DY ignored: {exc}")
            return
        with self._lock:
            self._files[path] = data
            self.downloads[path] = self.downloads.get(path, 0) + 1
        self._note(f"connection {connection}: stored {path} ({len(data)} bytes)")

    def files(self) -> dict[str, bytes]:
        """The downloaded objects by name (``E:NAME.TTF``), as the printer's flash holds them."""
        with self._lock:
            return dict(self._files)

    def directory(self, pattern: str) -> bytes:
        """The ``^HW`` answer for ``pattern`` (``E:*.TTF``, ``E:NAME.TTF``...)."""
        return directory_listing(self.files(), pattern.strip() or "R:*.*", free=64 * 1024 * 1024)

    def end_stream(self, stream: ZplStream, connection: int = 0) -> None:
        """Note a connection that closed in the middle of a label (which is then lost)."""
        if stream.pending:
            self._note(f"connection {connection}: closed inside an unterminated label "
                       f"({len(stream.pending)} bytes discarded)")

    def _note(self, text: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {text}")

    def _accept(self, zpl: bytes, connection: int) -> None:
        with self._lock:
            blocking = sorted(self._faults & set(PRINT_FAULTS))
            if blocking:
                self.discarded_count += 1
            else:
                index = self._next_index
                self._next_index += 1
        if blocking:
            self._note(f"connection {connection}: label discarded, printer not ready "
                       f"({', '.join(blocking)})")
            return
        label = SimLabel(index=index, zpl=zpl, connection=connection, received_at=time.time())
        # Storage and rendering happen outside the lock so connections are not serialised on
        # the renderer; each label has its own index, hence its own files.
        if self.out_dir:
            path = os.path.join(self.out_dir, f"{index:06d}.zpl")
            try:
                _atomic_write(path, zpl)
                label.zpl_path = path
            except OSError as exc:  # the label was "printed"; only our copy is missing
                self._note(f"label {index}: could not store {path}: {exc}")
        if self.render:
            self._render(label)
        with self._lock:
            self._labels.append(label)
            self.label_count += 1

    def _render(self, label: SimLabel) -> None:
        try:
            from .zpl import preview_png
            fonts = {path: data for path, data in self.files().items() if path.endswith(".TTF")}
            png, label.adaptations = preview_png(label.zpl, dpi=self.dpi, fonts=fonts)
        except Exception as exc:  # noqa: BLE001 - a bad label must not stop the printer
            label.render_error = f"{type(exc).__name__}: {exc}"
            self._note(f"label {label.index}: render failed: {label.render_error}")
            return
        if self.out_dir:
            path = os.path.join(self.out_dir, f"{label.index:06d}.png")
            try:
                _atomic_write(path, png)
                label.png_path = path
            except OSError as exc:
                label.render_error = f"could not store {path}: {exc}"
        else:
            label.png = png

    # -- inspection -----------------------------------------------------------------------
    def labels(self) -> list[SimLabel]:
        """The stored labels (most recent ``keep``), in print order."""
        with self._lock:
            return sorted(self._labels, key=lambda item: item.index)

    def snapshot(self) -> dict:
        """JSON-friendly state: counts, faults, readiness and recent notes."""
        faults = self.faults
        return {"name": self.name, "label_count": self.label_count,
                "discarded_count": self.discarded_count, "faults": faults,
                "ready": not faults, "notes": list(self.notes),
                "out_dir": self.out_dir, "render": self.render, "dpi": self.dpi,
                "files": {path: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                 "downloads": self.downloads.get(path, 0)}
                          for path, data in self.files().items()}}

    def wait_for_labels(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``label_count >= count`` or ``timeout`` passes (for tests and benches)."""
        deadline = time.monotonic() + timeout
        while self.label_count < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.label_count >= count


_REGISTRY: dict[str, SimulatedPrinter] = {}
_REGISTRY_LOCK = threading.Lock()


def simulated_printer(name: str = "default", **options) -> SimulatedPrinter:
    """The process-wide simulator called ``name`` (created with ``options`` on first use)."""
    with _REGISTRY_LOCK:
        if name not in _REGISTRY:
            _REGISTRY[name] = SimulatedPrinter(name, **options)
        return _REGISTRY[name]


def reset_simulated_printers() -> None:
    """Forget every registered simulator (tests call this between cases)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
