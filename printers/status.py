"""Zebra ``~HS`` (host status return): parse the three framed strings and read them off a socket.

The printer answers ``~HS`` with three strings, each ``<STX> ... <ETX><CR><LF>`` (ZPL II
Programming Guide, ``~HS``)::

    1: aaa,b,c,dddd,eee,f,g,h,iii,j,k,l   comms settings, paper out, pause, label length (dots),
                                          formats in receive buffer, buffer full, comms diagnostic
                                          mode, partial format, unused, corrupt RAM,
                                          under temperature, over temperature
    2: mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www   function settings, unused, head up (open), ribbon out,
                                          thermal transfer, print mode, print width mode,
                                          label waiting (peel-off), labels remaining in batch,
                                          format while printing, graphics stored
    3: xxxx,y                             password, static RAM installed

Parsing is strict (fewer fields, non-0/1 flags or junk outside the frames raise StatusError)
because a half-understood answer must never be read as "ready". Note that newer Zebra firmware
does not answer ``~HS`` at all while in MEDIA OUT, RIBBON OUT, HEAD OPEN, REWINDER FULL or
HEAD OVER-TEMPERATURE: the reader then times out and reports PrinterOffline, which is still a
fault, never ready.
"""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

from .errors import PrinterOffline, StatusError

STX, ETX = b"\x02", b"\x03"
HS_COMMAND = b"~HS"
_FRAME = re.compile(rb"\x02([^\x02\x03]*)\x03")
_MIN_FIELDS = (12, 11, 2)  # documented field counts; newer firmware may append more
_MAX_ANSWER = 4096         # a real answer is ~80 bytes; more means we are not talking to a Zebra


@dataclass(frozen=True)
class PrinterStatus:
    """The decoded ``~HS`` answer; ``ready`` is False whenever ``reasons`` is non-empty."""

    ready: bool
    paper_out: bool = False
    paused: bool = False
    head_open: bool = False
    ribbon_out: bool = False
    buffer_full: bool = False
    formats_in_buffer: int = 0
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_length_dots: int = 0
    labels_remaining: int = 0
    thermal_transfer: bool = False
    print_mode: str = ""
    # repr=False: string 3 carries the printer's front-panel password
    raw: bytes = field(default=b"", repr=False)


_PRINT_MODES = {"0": "rewind", "1": "peel-off", "2": "tear-off", "3": "cutter",
                "4": "applicator", "5": "delayed-cut", "6": "linerless-peel",
                "7": "linerless-rewind", "8": "partial-cutter", "9": "rfid"}


def _flag(fields: list[str], index: int, name: str) -> bool:
    value = fields[index].strip()
    if value not in ("0", "1"):
        raise StatusError(f"~HS field {name!r} must be 0 or 1, got {value!r}")
    return value == "1"


def _number(fields: list[str], index: int, name: str) -> int:
    value = fields[index].strip()
    if not value.isdigit():
        raise StatusError(f"~HS field {name!r} must be a number, got {value!r}")
    return int(value)


def _frames(raw: bytes) -> list[list[str]]:
    frames, pos = [], 0
    for match in _FRAME.finditer(raw):
        if raw[pos:match.start()].strip():
            raise StatusError(f"unexpected bytes outside the STX/ETX frames at offset {pos}")
        frames.append(match.group(1))
        pos = match.end()
        if len(frames) == 3:
            break
    if len(frames) < 3:
        raise StatusError(f"~HS answer has {len(frames)} of 3 STX...ETX strings")
    if raw[pos:].strip():
        raise StatusError(f"unexpected bytes after the third ~HS string at offset {pos}")
    out = []
    for number, (frame, minimum) in enumerate(zip(frames, _MIN_FIELDS), start=1):
        try:
            fields = frame.decode("ascii").split(",")
        except UnicodeDecodeError:
            raise StatusError(f"~HS string {number} is not ASCII") from None
        if len(fields) < minimum:
            raise StatusError(f"~HS string {number} has {len(fields)} fields, expected {minimum}")
        out.append(fields)
    return out


def parse_host_status(raw: bytes) -> PrinterStatus:
    """Decode a complete ``~HS`` answer (three framed strings); raise StatusError if malformed."""
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("parse_host_status() needs bytes")
    raw = bytes(raw)
    s1, s2, _s3 = _frames(raw)
    paper_out = _flag(s1, 1, "paper out")
    paused = _flag(s1, 2, "pause")
    label_length = _number(s1, 3, "label length")
    formats = _number(s1, 4, "formats in buffer")
    buffer_full = _flag(s1, 5, "buffer full")
    diagnostic = _flag(s1, 6, "diagnostic mode")
    partial = _flag(s1, 7, "partial format")
    corrupt_ram = _flag(s1, 9, "corrupt RAM")
    under_temp = _flag(s1, 10, "under temperature")
    over_temp = _flag(s1, 11, "over temperature")
    head_open = _flag(s2, 2, "head up")
    ribbon_out = _flag(s2, 3, "ribbon out")
    thermal_transfer = _flag(s2, 4, "thermal transfer")
    label_waiting = _flag(s2, 7, "label waiting")
    remaining = _number(s2, 8, "labels remaining")

    # Blocking conditions: the printer will not print (or, in diagnostic mode, prints a hex
    # dump instead of the label), so the server must not send.
    blocking = [("paper_out", paper_out), ("head_open", head_open), ("ribbon_out", ribbon_out),
                ("paused", paused), ("buffer_full", buffer_full),
                ("over_temperature", over_temp), ("diagnostic_mode", diagnostic)]
    # Worth showing an operator, but the printer still prints.
    advisory = [("under_temperature", under_temp), ("corrupt_ram", corrupt_ram),
                ("partial_format", partial), ("label_waiting", label_waiting)]
    reasons = [name for name, on in blocking if on]
    return PrinterStatus(
        ready=not reasons, paper_out=paper_out, paused=paused, head_open=head_open,
        ribbon_out=ribbon_out, buffer_full=buffer_full, formats_in_buffer=formats,
        reasons=reasons, warnings=[name for name, on in advisory if on],
        label_length_dots=label_length, labels_remaining=remaining,
        thermal_transfer=thermal_transfer,
        print_mode=_PRINT_MODES.get(s2[5].strip(), s2[5].strip()), raw=raw)


def format_host_status(*, paper_out=False, paused=False, head_open=False, ribbon_out=False,
                       buffer_full=False, formats_in_buffer=0, label_length_dots=1218,
                       labels_remaining=0, thermal_transfer=False) -> bytes:
    """Build a ``~HS`` answer the way a Zebra printer frames it (used by the simulators)."""
    b = lambda flag: "1" if flag else "0"  # noqa: E731 - tiny local formatter
    s1 = (f"030,{b(paper_out)},{b(paused)},{label_length_dots:04d},{formats_in_buffer:03d},"
          f"{b(buffer_full)},0,0,000,0,0,0")
    s2 = (f"000,0,{b(head_open)},{b(ribbon_out)},{b(thermal_transfer)},2,6,0,"
          f"{labels_remaining:08d},1,000")
    s3 = "1234,0"
    return b"".join(STX + s.encode("ascii") + ETX + b"\r\n" for s in (s1, s2, s3))


def read_host_status(sock: socket.socket, timeout: float = 2.0) -> PrinterStatus:
    """Send ``~HS`` on ``sock`` and read until the third ETX (+CR LF) or raise PrinterOffline."""
    deadline = time.monotonic() + timeout
    previous = sock.gettimeout()
    try:
        try:
            sock.settimeout(timeout)
            sock.sendall(HS_COMMAND)
        except OSError as exc:  # includes TimeoutError
            raise PrinterOffline(f"could not send ~HS: {exc}") from exc
        buf = bytearray()
        while buf.count(ETX) < 3:
            if not _recv_until(sock, buf, deadline):
                raise PrinterOffline(
                    f"no complete ~HS answer within {timeout:g}s "
                    f"({buf.count(ETX)} of 3 strings, {len(buf)} bytes)")
        # The CR LF after the third ETX may trail in a later segment; read them (briefly) so
        # they are not left unread, which would make close() reset the connection.
        end = _nth_index(buf, ETX, 3) + 1
        short_deadline = min(deadline, time.monotonic() + 0.05)
        while len(buf) - end < 2 and _recv_until(sock, buf, short_deadline, quiet=True):
            pass
        return parse_host_status(bytes(buf))
    finally:
        try:
            sock.settimeout(previous)
        except OSError:
            pass


def _recv_until(sock: socket.socket, buf: bytearray, deadline: float, quiet=False) -> bool:
    """Receive one chunk into ``buf`` before ``deadline``; False on timeout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    sock.settimeout(remaining)
    try:
        chunk = sock.recv(1024)
    except TimeoutError:
        return False
    except OSError as exc:
        if quiet:
            return False
        raise PrinterOffline(f"connection error while reading ~HS: {exc}") from exc
    if not chunk:
        if quiet:
            return False
        raise PrinterOffline(f"printer closed the connection after {buf.count(ETX)} of 3 "
                             "~HS strings")
    buf += chunk
    if len(buf) > _MAX_ANSWER:
        raise StatusError(f"~HS answer longer than {_MAX_ANSWER} bytes without 3 strings")
    return True


def _nth_index(buf: bytearray, needle: bytes, n: int) -> int:
    index = -1
    for _ in range(n):
        index = buf.index(needle, index + 1)
    return index
