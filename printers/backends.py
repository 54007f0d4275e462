"""Printer backends chosen by URI: ``tcp://host[:9100]``, ``file:///dir``, ``sim://[name]``.

``files(pattern)`` lists the objects a printer stores (``^HW``), e.g. whether it already has the
label font (printers.fonts) that a sender downloads only once.

``station://`` is deliberately not a device here: the server routes those jobs to the station
app, which then uses one of these backends for its own printer.

``send()`` raises on any error it can see; on TCP that means the bytes were not all accepted
by the socket or the connection broke. A raw 9100 connection has no acknowledgement, so the
closing handshake (our FIN, the printer's EOF) is awaited for ``close_timeout`` seconds as the
best available sign that the printer read everything.
"""
from __future__ import annotations

import abc
import fnmatch
import os
import re
import socket
import tempfile
import time
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from .errors import PrinterError, PrinterNotReady, PrinterOffline, PrinterUnreachable
from .fonts import LabelFont, parse_listing
from .simstate import simulated_printer
from .status import PrinterStatus, parse_host_status, read_host_status
from .stream import split_stream

DEFAULT_PORT = 9100
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_OBJECT = re.compile(r"^[A-Za-z]:[A-Za-z0-9_*?]{1,8}\.[A-Za-z0-9*?]{1,3}$")
_MAX_LISTING = 64 * 1024


def _pattern(pattern: str) -> str:
    if not _OBJECT.match(pattern):
        raise ValueError(f"bad object pattern {pattern!r}: expected d:name.ext, e.g. E:*.TTF")
    return pattern.upper()


def _payload(zpl) -> bytes:
    """Validate a job: bytes, not empty, and not ending inside an open ``^XA`` label."""
    if not isinstance(zpl, (bytes, bytearray, memoryview)):
        raise TypeError("ZPL must be bytes (encode text with ^CI28 + UTF-8 yourself)")
    data = bytes(zpl)
    if not data.strip():
        raise ValueError("empty ZPL job")
    if split_stream(data)[2]:
        # A printer would wait for the ^XZ and then glue the next job onto this one.
        raise ValueError("ZPL ends inside an unterminated ^XA label (missing ^XZ)")
    return data


class Printer(abc.ABC):
    """A label printer: ask for status, send ZPL, close."""

    uri = ""

    @abc.abstractmethod
    def status(self) -> PrinterStatus:
        """Current status; raises PrinterUnreachable / PrinterOffline / StatusError."""

    @abc.abstractmethod
    def send(self, zpl: bytes, job_id: str | None = None) -> None:
        """Send one job; raises on any error (nothing is reported as sent unless it was)."""

    @abc.abstractmethod
    def files(self, pattern: str) -> dict[str, int]:
        """Objects the printer stores matching ``pattern`` (``E:*.TTF``): ``{path: bytes}``."""

    def close(self) -> None:
        """Release the connection, if any; the object stays usable."""

    def __enter__(self) -> "Printer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


class TcpPrinter(Printer):
    """Raw TCP (port 9100) Zebra printer; status via ``~HS`` on the same connection."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, connect_timeout: float = 3.0,
                 timeout: float = 10.0, status_timeout: float = 2.0,
                 close_timeout: float = 1.0):
        self.host, self.port = host, port
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.status_timeout, self.close_timeout = status_timeout, close_timeout
        self.uri = f"tcp://{host}:{port}"
        self._sock: socket.socket | None = None

    def _connection(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.create_connection((self.host, self.port),
                                                      timeout=self.connect_timeout)
                # The ~HS query right after a label is tiny: without NODELAY, Nagle holds it
                # until the printer's delayed ACK (~40 ms per label).
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # refused, timed out, no route, DNS failure
                raise PrinterUnreachable(f"{self.uri}: {exc}") from exc
        return self._sock

    def _abort(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def status(self) -> PrinterStatus:
        """Connect if needed and ask ``~HS``; the connection stays open for ``send``."""
        sock = self._connection()
        try:
            return read_host_status(sock, self.status_timeout)
        except PrinterError as exc:
            self._abort()  # never reuse a connection with a half-read answer on it
            raise type(exc)(f"{self.uri}: {exc}") from exc

    def send(self, zpl: bytes, job_id: str | None = None) -> None:
        """``sendall`` the whole job in one buffer; ``job_id`` is not used by raw TCP."""
        data = _payload(zpl)
        sock = self._connection()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(data)  # one buffer: no other writer can interleave on this socket
        except TimeoutError as exc:
            self._abort()
            raise PrinterOffline(f"{self.uri}: send timed out after {self.timeout:g}s "
                                 "(printer not reading: buffer full or offline)") from exc
        except OSError as exc:
            self._abort()
            raise PrinterOffline(f"{self.uri}: connection lost while sending: {exc}") from exc

    def files(self, pattern: str) -> dict[str, int]:
        """Ask ``^HW`` on the same connection and read its one STX...ETX listing."""
        query = b"^XA^HW" + _pattern(pattern).encode("ascii") + b"^XZ"
        sock = self._connection()
        deadline = time.monotonic() + self.status_timeout
        buf = bytearray()
        try:
            sock.settimeout(self.status_timeout)
            sock.sendall(query)
            while b"\x03" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PrinterOffline(f"{self.uri}: no ^HW answer within "
                                         f"{self.status_timeout:g}s")
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
                if not chunk:
                    raise PrinterOffline(f"{self.uri}: closed the connection during ^HW")
                buf += chunk
                if len(buf) > _MAX_LISTING:
                    raise PrinterOffline(f"{self.uri}: ^HW answer over {_MAX_LISTING} bytes")
        except PrinterError:
            self._abort()  # never reuse a connection with a half-read answer on it
            raise
        except OSError as exc:  # includes TimeoutError
            self._abort()
            raise PrinterOffline(f"{self.uri}: ^HW failed: {exc}") from exc
        return parse_listing(bytes(buf))

    def close(self) -> None:
        """Half-close, wait up to ``close_timeout`` for the printer's EOF, then close."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.close_timeout
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                if not sock.recv(1024):
                    break  # the printer saw our FIN after all our data: clean end
        except OSError:
            pass  # best effort: the data was already handed to the kernel
        finally:
            sock.close()


class FilePrinter(Printer):
    """Writes each job atomically to ``<dir>/<job_id or timestamp>.zpl``; always ready."""

    def __init__(self, directory: str):
        self.directory = directory
        self.uri = "file://" + directory

    def _ensure_dir(self) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise PrinterUnreachable(f"{self.uri}: cannot create directory: {exc}") from exc
        if not os.access(self.directory, os.W_OK):
            raise PrinterUnreachable(f"{self.uri}: directory is not writable")

    def status(self) -> PrinterStatus:
        """Always ready once the directory exists and is writable."""
        self._ensure_dir()
        return PrinterStatus(ready=True)

    def files(self, pattern: str) -> dict[str, int]:
        """Fonts sent here: a job called ``font-NAME`` stands for ``E:NAME.TTF``."""
        drive, _, spec = _pattern(pattern).partition(":")
        self._ensure_dir()
        out = {}
        for entry in os.scandir(self.directory):
            if entry.name.startswith("font-") and entry.name.endswith(".zpl"):
                path = f"E:{entry.name[5:-4].upper()}.TTF"
                if drive == "E" and fnmatch.fnmatchcase(path[2:], spec):
                    out[path] = entry.stat().st_size
        return out

    def send(self, zpl: bytes, job_id: str | None = None) -> None:
        """Write ``<job_id>.zpl`` (or a timestamped name) via temp file + rename."""
        data = _payload(zpl)
        if job_id is None:
            job_id = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 10**9:09d}"
        if not _JOB_ID.match(job_id):
            raise ValueError(f"job id {job_id!r} is not a safe file name")
        self._ensure_dir()
        final = os.path.join(self.directory, f"{job_id}.zpl")
        # Temp file in the same directory + fsync + rename: a reader sees all or nothing.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{job_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise PrinterUnreachable(f"{self.uri}: write failed: {exc}") from exc


class SimPrinter(Printer):
    """In-process simulator from the module-level registry (same semantics as the TCP one)."""

    def __init__(self, name: str = "default", **options):
        self.name = name
        self.device = simulated_printer(name, **options)
        self.uri = f"sim://{name}"

    def _reachable(self) -> None:
        if self.device.is_set("down"):
            raise PrinterUnreachable(f"{self.uri}: connection refused (simulated power off)")

    def status(self) -> PrinterStatus:
        """Parse the simulator's ``~HS`` answer, exactly as for a TCP printer."""
        self._reachable()
        answer = self.device.host_status()
        if answer is None:
            raise PrinterOffline(f"{self.uri}: no ~HS answer")
        return parse_host_status(answer)

    def files(self, pattern: str) -> dict[str, int]:
        """The simulator's ``^HW`` answer, parsed as for a TCP printer."""
        self._reachable()
        if self.device.is_set("offline"):
            raise PrinterOffline(f"{self.uri}: no ^HW answer")
        return parse_listing(self.device.directory(_pattern(pattern)))

    def send(self, zpl: bytes, job_id: str | None = None) -> None:
        """Feed the job to the simulator as one connection's worth of bytes."""
        data = _payload(zpl)
        self._reachable()
        stream = self.device.open_stream()
        self.device.receive(stream, data)
        self.device.end_stream(stream)


# A printer URI the server never drives: the station app pulls those jobs and prints them itself.
STATION_PULL = "station://"


def printer_for_uri(uri: str, **options) -> Printer:
    """Build the backend for ``uri``; unknown schemes and ``station://`` raise ValueError."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "tcp":
        if not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"bad printer URI {uri!r}: expected tcp://host[:port]")
        return TcpPrinter(parts.hostname, parts.port or DEFAULT_PORT, **options)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError(f"bad printer URI {uri!r}: expected file:///absolute/dir")
        return FilePrinter(url2pathname(unquote(parts.path)), **options)
    if scheme == "sim":
        return SimPrinter(parts.netloc or "default", **options)
    if scheme == "station":
        raise ValueError("station:// is not a device: the server sends those jobs to the "
                         "station app, which prints with its own tcp:// or file:// printer")
    raise ValueError(f"unknown printer URI scheme {scheme!r} in {uri!r} "
                     "(expected tcp://, file:// or sim://)")


def ready_or_raise(printer: Printer) -> PrinterStatus:
    """Ask ``~HS``: its answer when the printer can print now, else PrinterNotReady.

    The one gate before sending a job (``send_job``, the server's delivery, the station app):
    a printer that is out of paper, open or paused discards what it is sent, so nothing is
    sent until it has just said it is ready.
    """
    status = printer.status()
    if not status.ready:
        raise PrinterNotReady(status)
    return status


def send_job(printer: Printer, zpl: bytes, job_id: str | None = None) -> PrinterStatus:
    """One job on its own connection: ``ready_or_raise``, send, close; returns that status."""
    try:
        status = ready_or_raise(printer)
        printer.send(zpl, job_id=job_id)
        return status
    finally:
        printer.close()


def ensure_font(printer: Printer, font: LabelFont) -> bool:
    """Store ``font`` on the printer (``~DY``) unless it lists it (``^HW``); True when sent."""
    if font.path in printer.files(font.path):
        return False
    printer.send(font.download_command(), job_id=f"font-{font.name}")
    return True
