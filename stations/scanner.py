"""Barcode scanners behind one small ABC: keyboard wedge (timing heuristic) and serial (pyserial).

Both deliver ``Barcode`` objects through a callback. Serial callbacks come from a background
thread; the UI connects them to Qt signals, which queue the call onto the UI thread.
AIM symbology identifiers (``]C1``, ``]d2``, ``]Q3`` …) and GS1 element strings are decoded with
biip. Only strings a GS1 symbology, a GS separator or GS1 HRI mark as GS1 are parsed as GS1,
because a plain lot number such as ``10ABC`` would otherwise read as AI (10).
"""
from __future__ import annotations

import abc
import logging
import re
import threading
import time
from dataclasses import dataclass, field

import biip
import serial

from .qt import QApplication, QEvent, QLineEdit, QObject, Qt, QWidget

log = logging.getLogger(__name__)
GS = "\x1d"
_AIM = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
GS1_LOT_AI, GS1_SERIAL_AI, GS1_GTIN_AI = "10", "21", "01"


@dataclass(frozen=True)
class Barcode:
    """One decoded scan: the payload and what it names (lot, unit serial, GS1 fields)."""

    raw: str
    text: str                       # payload without the AIM prefix, GS kept
    symbology: str | None = None    # AIM identifier, e.g. "]C1"
    gs1: dict[str, str] = field(default_factory=dict)
    error: str | None = None        # a GS1-marked string that did not parse

    @property
    def lot_no(self) -> str | None:
        """The lot number: GS1 AI (10), else None (plain text is decided by the lookup)."""
        return self.gs1.get(GS1_LOT_AI)

    @property
    def serial(self) -> str | None:
        """The unit serial: GS1 AI (21)."""
        return self.gs1.get(GS1_SERIAL_AI)

    @property
    def is_gs1(self) -> bool:
        """True when the scan carried GS1 element strings."""
        return bool(self.gs1)


def parse_barcode(raw: str, gs_substitute: str = "") -> Barcode:
    """Decode a scan: AIM prefix, GS1 element strings (biip), the substitute turned back into GS."""
    value = raw.strip("\r\n\t ")
    if gs_substitute:
        value = value.replace(gs_substitute, GS)
    symbology = value[:3] if _AIM.match(value) else None
    text = value[3:] if symbology else value
    gs1_symbology = symbology is not None and symbology[1:3] in ("C1", "e0", "d2", "Q3", "J1")
    gs1_marked = GS in text or text.startswith("(") or gs1_symbology
    if not gs1_marked:
        return Barcode(raw, text.replace(GS, ""), symbology)
    try:
        if text.startswith("(") and not symbology:
            message = biip.gs1_messages.GS1Message.parse_hri(text)
            elements = message.element_strings
        else:
            result = biip.parse(value)
            if result.gs1_message is None:
                raise biip.ParseError(result.gs1_message_error or "not a GS1 message")
            elements = result.gs1_message.element_strings
    except biip.BiipException as exc:
        return Barcode(raw, text.replace(GS, ""), symbology, error=str(exc))
    return Barcode(raw, text, symbology, {e.ai.ai: e.value for e in elements})


class WedgeDetector:
    """Tell a wedge scan from typing: keys closer than ``max_gap_ms`` apart, then Enter."""

    def __init__(self, max_gap_ms: float = 35.0, min_length: int = 4):
        self.max_gap_ms, self.min_length = max_gap_ms, min_length
        self._chars: list[str] = []
        self._last = 0.0

    def feed(self, text: str, t_ms: float) -> None:
        """A printable key arrived at ``t_ms``; a slow key starts a new burst."""
        if self._chars and t_ms - self._last > self.max_gap_ms:
            self._chars = []
        self._chars.append(text)
        self._last = t_ms

    def finish(self, t_ms: float) -> str | None:
        """Enter arrived: the burst if it was a scan, else None (typing). Always resets."""
        chars, last = self._chars, self._last
        self._chars = []
        # Scanners send the suffix at the same rate; twice the gap tolerates a USB frame boundary.
        if len(chars) >= self.min_length and t_ms - last <= 2 * self.max_gap_ms:
            return "".join(chars)
        return None

    def reset(self) -> None:
        """Forget a partial burst."""
        self._chars = []


class Scanner(abc.ABC):
    """A barcode source; ``start`` begins delivering ``Barcode``s to ``on_scan``."""

    def __init__(self, gs_substitute: str = ""):
        self.gs_substitute = gs_substitute
        self.on_scan = lambda barcode: None
        self.on_state = lambda state, detail="": None
        self.delivered = 0  # scans handed on (diagnostics and tests)

    def deliver(self, raw: str) -> None:
        """Decode and hand one raw scan to the callback (never raises into the source)."""
        if raw.strip():
            self.delivered += 1
            log.info("scanner read %r", raw.strip("\r\n"))
            try:
                self.on_scan(parse_barcode(raw, self.gs_substitute))
            except Exception:  # a UI bug must not kill the reader thread
                log.exception("scan handler failed for %r", raw)

    @abc.abstractmethod
    def start(self) -> None:
        """Begin reading."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop reading and release the device."""


class _WedgeFilter(QObject):
    """Application-wide key filter (a QObject cannot also use ABCMeta, hence this helper)."""

    def __init__(self, owner: "WedgeScanner"):
        super().__init__()
        self.owner = owner
        self._last_sig = None
        self._last_obj = None
        self._released = True
        self._last_result = False

    def _is_propagation(self, obj, sig) -> bool:
        # Qt re-delivers an ignored key event to each parent, and the application filter sees
        # every delivery: the same key, no release in between, now at an ancestor.
        if self._released or sig != self._last_sig or obj is self._last_obj:
            return False
        try:
            return (isinstance(obj, QWidget) and isinstance(self._last_obj, QWidget)
                    and obj.isAncestorOf(self._last_obj))
        except RuntimeError:  # the earlier receiver was deleted meanwhile
            return False

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 (Qt name)
        """Watch key presses; swallow the Enter that ends a scan and strip the burst."""
        kind = ev.type()
        if kind == QEvent.KeyRelease:
            self._released = True
            return False
        if kind != QEvent.KeyPress or self.owner.paused:
            return False
        sig = (ev.key(), ev.text(), int(ev.modifiers()))
        if self._is_propagation(obj, sig):
            return self._last_result
        self._released, self._last_sig, self._last_obj = False, sig, obj
        self._last_result = self.owner.key(ev.key(), ev.text(), ev.timestamp(), obj)
        return self._last_result


class WedgeScanner(Scanner):
    """A USB scanner that types: scans are told from typing by inter-key timing."""

    def __init__(self, gs_substitute: str = "", max_gap_ms: float = 35.0, min_length: int = 4,
                 clock=time.monotonic):
        super().__init__(gs_substitute)
        self.detector = WedgeDetector(max_gap_ms, min_length)
        self.clock = clock
        self.paused = False
        self._filter: _WedgeFilter | None = None

    def start(self) -> None:
        """Install the application-wide key filter."""
        if self._filter is None:
            self._filter = _WedgeFilter(self)
            QApplication.instance().installEventFilter(self._filter)
        self.on_state("connected", "wedge")

    def stop(self) -> None:
        """Remove the key filter."""
        if self._filter is not None:
            app = QApplication.instance()
            if app is not None:
                app.removeEventFilter(self._filter)
            self._filter = None

    def key(self, key: int, text: str, timestamp: int = 0, target=None) -> bool:
        """Feed one key press; returns True when it ended a scan (the event is consumed)."""
        # X11/Windows stamp real key events with the keyboard's time, which stays right even
        # when the UI thread was busy and the keys queued up; synthetic events carry 0.
        t_ms = float(timestamp) if timestamp else self.clock() * 1000.0
        if key in (Qt.Key_Return, Qt.Key_Enter):
            scan = self.detector.finish(t_ms)
            if scan is None:
                return False
            self._strip_from(target if isinstance(target, QLineEdit)
                             else QApplication.focusWidget(), scan)
            self.deliver(scan)
            return True
        if text and (text.isprintable() or text == GS):
            self.detector.feed(text, t_ms)
        elif key not in (Qt.Key_Shift, Qt.Key_Control, Qt.Key_Alt, Qt.Key_Meta):
            self.detector.reset()  # arrows, Tab, Backspace: a person is editing
        return False

    @staticmethod
    def _strip_from(focus, scan: str) -> None:
        # The burst was already typed into the field that had the keys; take it back out so a
        # scan never lands inside a measurement value.
        if isinstance(focus, QLineEdit):
            if focus.property("scanField"):
                focus.clear()
            elif focus.text().endswith(scan):
                focus.setText(focus.text()[:-len(scan)])


class SerialScanner(Scanner):
    """A serial (or USB-CDC) scanner read on a background thread; reconnects when unplugged."""

    def __init__(self, port: str, baudrate: int = 9600, terminator: bytes = b"\r",
                 gs_substitute: str = "", retry_max: float = 5.0):
        super().__init__(gs_substitute)
        self.port, self.baudrate, self.terminator = port, baudrate, terminator or b"\r"
        self.retry_max = retry_max
        self.serial: serial.SerialBase | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the reader thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="serial-scanner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the port."""
        self._stop.set()
        port = self.serial
        if port is not None:
            try:
                port.close()
            except Exception:  # closing a vanished device may raise anything
                pass
        if self._thread is not None:
            self._thread.join(timeout=3)

    def _open(self) -> serial.SerialBase:
        # serial_for_url also opens loop:// (tests) and socket:// / rfc2217:// (serial servers).
        return serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.2)

    def _run(self) -> None:
        delay = 0.2
        missing_logged = False
        while not self._stop.is_set():
            try:
                self.serial = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                if not missing_logged:  # once per outage, not once per retry
                    log.warning("scanner %s not available: %s", self.port, exc)
                    missing_logged = True
                self.on_state("disconnected", str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = 0.2
            missing_logged = False
            self.connected.set()
            log.info("scanner connected on %s", self.port)
            self.on_state("connected", self.port)
            try:
                self._read_loop(self.serial)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # Unplugging raises SerialException/OSError; a port closed under the reader
                # can surface as TypeError/AttributeError inside pyserial.
                if not self._stop.is_set():
                    log.warning("scanner on %s disconnected: %s", self.port,
                                str(exc) or type(exc).__name__)
                    missing_logged = True
                    self.on_state("disconnected", str(exc) or type(exc).__name__)
            finally:
                self.connected.clear()
                try:
                    self.serial.close()
                except Exception:
                    pass
            self._stop.wait(delay)

    def _read_loop(self, port: serial.SerialBase) -> None:
        buffer = b""
        while not self._stop.is_set():
            if not port.is_open:
                raise serial.SerialException("port closed")
            data = port.read(port.in_waiting or 1)
            if not data:
                continue
            buffer += data
            while self.terminator in buffer:
                line, buffer = buffer.split(self.terminator, 1)
                self.deliver(line.decode("utf-8", errors="replace"))
            if len(buffer) > 4096:  # no terminator ever: wrong setting; don't grow forever
                buffer = b""
