"""Incremental ZPL framer: turns a byte stream into labels and control commands, as a printer does.

A printer acts on ``~`` control commands (``~HS``, ``~JR``, ...) the moment they arrive, even in
the middle of a label, and prints a label when ``^XZ`` closes the ``^XA`` that opened it. This
framer reproduces exactly that much, incrementally (data may arrive a byte at a time), so the
simulators see what a real printer would see, including the effect of injected commands.

Handled: command names are matched case-insensitively; prefix changes with ``^CC``/``~CC`` and
``^CT``/``~CT``; the binary payload of ``^GFB``/``^GFC`` (its byte count is skipped, so binary
graphics never look like commands); the data of a ``~DY`` download (binary, ``:B64:`` or ASCII
hex), which is handed on whole as the control event's data. Not handled: ``~DB``/``~DU`` font
downloads and the STX/ETX substitutes for ``^XA``/``^XZ`` of old firmware.
"""
from __future__ import annotations

from dataclasses import dataclass

from .fonts import download_end

_CARET, _TILDE = 0x5E, 0x7E
_GF_HEADER_MAX = 64  # "^GFB,12345678,12345678,123," is far shorter


@dataclass(frozen=True)
class ZplEvent:
    """One thing the printer would act on: a complete label, a control command or an overflow."""

    kind: str   # "label" | "control" | "overflow"
    name: str   # "XZ" for labels, the command name (e.g. "HS") for control commands
    data: bytes


class ZplStream:
    """Feed bytes, get ZplEvents; keeps only the unfinished label (bounded) between calls."""

    def __init__(self, max_label_bytes: int = 16 * 1024 * 1024):
        self.max_label_bytes = max_label_bytes
        self.format_prefix = _CARET
        self.control_prefix = _TILDE
        self._buf = bytearray()
        self._pos = 0          # next byte to scan
        self._start = None     # offset of the open label's ^XA, or None between labels

    @property
    def pending(self) -> bytes:
        """Bytes of a label that was opened (``^XA``) but not yet closed (``^XZ``)."""
        return bytes(self._buf[self._start:]) if self._start is not None else b""

    def feed(self, data: bytes) -> list[ZplEvent]:
        """Consume ``data`` and return the events it completes, in stream order."""
        self._buf += data
        events: list[ZplEvent] = []
        while self._step(events):
            pass
        self._compact(events)
        return events

    def _step(self, events: list[ZplEvent]) -> bool:
        buf, fmt, ctl = self._buf, self.format_prefix, self.control_prefix
        j = self._find_prefix(self._pos)
        if j < 0:
            self._pos = len(buf)
            return False
        if j + 1 < len(buf) and buf[j + 1] in (fmt, ctl):
            self._pos = j + 1  # a lone prefix byte: the next one starts the command
            return True
        if len(buf) < j + 3:
            self._pos = j      # wait for the two-letter command name
            return False
        prefix = buf[j]
        name = bytes(buf[j + 1:j + 3]).upper()
        nxt = j + 3
        if name in (b"CC", b"CT"):
            if len(buf) < j + 4:
                self._pos = j
                return False
            if name == b"CC":
                self.format_prefix = buf[j + 3]
            else:
                self.control_prefix = buf[j + 3]
            nxt = j + 4
        elif prefix == fmt and name == b"GF":
            end = self._gf_payload_end(j + 3)
            if end is None:
                self._pos = j  # header or binary payload still arriving
                return False
            nxt = end
        elif prefix == ctl and name == b"DY":
            end = download_end(buf, j + 3)
            if end is None:
                self._pos = j  # the download's data is still arriving
                return False
            nxt = end
        if prefix == fmt and name == b"XA":
            if self._start is None:
                self._start = j
        elif prefix == fmt and name == b"XZ":
            if self._start is not None:
                events.append(ZplEvent("label", "XZ", bytes(buf[self._start:j + 3])))
                self._start = None
        elif prefix == ctl:
            events.append(ZplEvent("control", name.decode("latin-1"), bytes(buf[j:nxt])))
        self._pos = nxt
        return True

    def _find_prefix(self, start: int) -> int:
        a = self._buf.find(bytes((self.format_prefix,)), start)
        b = self._buf.find(bytes((self.control_prefix,)), start)
        return min(a, b) if a >= 0 and b >= 0 else max(a, b)

    def _gf_payload_end(self, start: int) -> int | None:
        """End offset of ``^GFa,b,c,d,data``'s binary data; ``start`` when not binary."""
        buf = self._buf
        header_end, commas = start, 0
        while commas < 4:
            if header_end >= len(buf):
                return None if header_end - start < _GF_HEADER_MAX else start
            byte = buf[header_end]
            if byte in (self.format_prefix, self.control_prefix) or \
                    header_end - start >= _GF_HEADER_MAX:
                return start  # short/odd header: not a binary graphic we can size
            commas += byte == 0x2C
            header_end += 1
        params = bytes(buf[start:header_end]).split(b",")
        kind, count = params[0].strip().upper(), params[1].strip()
        if kind not in (b"B", b"C") or not count.isdigit():
            return start  # ASCII hex (A) data contains no prefix bytes
        end = header_end + int(count)
        return end if end <= len(buf) else None

    def _compact(self, events: list[ZplEvent]) -> None:
        keep = self._start if self._start is not None else self._pos
        if keep:
            del self._buf[:keep]
            self._pos -= keep
            if self._start is not None:
                self._start = 0
        if len(self._buf) > self.max_label_bytes:
            # A real printer would run out of memory (an open label, or a download that never
            # ends); the simulator reports it instead.
            events.append(ZplEvent("overflow", "", b""))
            self._buf.clear()
            self._pos, self._start = 0, None


def split_stream(data: bytes) -> tuple[list[bytes], list[str], bytes]:
    """One-shot framing: (labels, control command names, unterminated trailing label)."""
    stream = ZplStream(max_label_bytes=max(len(data), 1) + 1)
    events = stream.feed(bytes(data))
    labels = [e.data for e in events if e.kind == "label"]
    controls = [e.name for e in events if e.kind == "control"]
    return labels, controls, stream.pending
