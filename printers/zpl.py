"""Safe ZPL building, label splitting and PNG previews (zplkit 0.3.2).

Field data: put user text in a label only as ``^FH\\^FD{field_hex(text)}^FS``. ``field_hex``
writes every byte outside a small safe set (letters, digits, space, ``-.:/+=#*()@!?%&,;$``) as
``\\HH`` (hex of its UTF-8 bytes), so ``^``, ``~``, ``\\``, ``_`` and control characters in the
text can never start a command. Non-ASCII text also needs ``^CI28`` (UTF-8) in the label.
Barcodes decode a second escape layer after ``^FH`` (verified with zplkit + zxing-cpp):
Code 128 treats ``>`` as an invocation code (``>0`` is a literal ``>``) and only takes ASCII
0x20-0x7E; Data Matrix quality 200 treats its escape character (``~`` by default on current
firmware and zplkit's zd621 profile, ``_`` in older manuals and zplkit's "specification"
profile: pin it with ``^BXN,h,200,,,,~``) as a control prefix (``~~`` is a literal ``~``). Pass ``barcode="code128"`` / ``"datamatrix"`` to handle those. QR (``^BQ``)
needs nothing beyond the mode prefix (``QA,``) the template puts before the data.

Preview limits of zplkit 0.3.2, found by experiment:
- renders ``^FH`` hex (any indicator), ``^CI28`` UTF-8 data, ``^BC`` Code 128, ``^BX`` Data
  Matrix (UTF-8 data decodes correctly), ``^BQ`` QR, ``^GB``, ``^FB``, ``^PW``/``^LL``;
- rejects ``^PQ`` and other job-control commands, every ``~`` control command (``~HS``,
  ``~JR``...), lowercase commands, unresolved ``^A@`` fonts and labels without ``^XZ``;
- resident fonts (``^A0``, ``^AA``..``^AZ``, ``^CF``) hold ASCII plus a few Latin-1 glyphs
  (``é`` renders, ``Ä``/``Ω``/Hangul do not).
- renders TrueType fonts downloaded with ``~DY`` (``A``/``T``, ``:B64:`` data) and named with
  ``^CW`` or ``^A@``; a font the label names but the input does not download is an error.
``preview_png`` therefore renders a preview-safe copy: ``^PQ``/job-control and ``~`` commands
removed, text fields (not barcodes) in a resident font with non-ASCII data transliterated to
ASCII, and it reports each change in ASCII sentences suitable for an HTTP header. A text field in
a TrueType font the caller supplies (``fonts``: printer path -> file, e.g. the label font of
``printers.fonts``) keeps its text, and the font is downloaded ahead of the label, so the preview
draws the glyphs the printer draws (Hangul included). zplkit takes nothing but ZPL bytes (no font
object to keep between renders), so the font travels with every preview, as binary ``~DY`` data
(``B``: a byte count, no escaping): the same file and pixels as ASCII hex or ``:B64:``, but
decoding the 1.4 MB of hex cost zplkit ~10 ms of CPU per preview (16-18 ms in all for the
built-in templates, 5.7-7.2 ms now; most of the rest is drawing the TrueType glyphs, ~0.5 ms with
resident fonts). Subsetting the font to the label's characters (fontTools) saves only ~1 ms more
and costs ~250 ms for each new character set, so previews send the whole file. Only the first
label is rendered.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Mapping

from .stream import split_stream

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                  b" -.:/+=#*()@!?%&,;$")
# Commands that change how or how often a label is printed, not what it looks like: safe to
# drop from a preview. Anything else zplkit rejects is an error, not a silent omission.
_JOB_CONTROL = {b"PQ", b"PR", b"MM", b"MN", b"MT", b"MD", b"MF", b"MP", b"MW", b"JU", b"JZ",
                b"JJ", b"JM", b"JS", b"JT", b"KL", b"KN", b"KP", b"SS", b"ST", b"SZ", b"PF",
                b"PP", b"HH", b"HW", b"HT", b"HV", b"HF", b"HG"}
_FONT_PATH = re.compile(rb"^[A-Za-z]:[A-Za-z0-9_]{1,8}\.TTF$", re.I)
_TRANSLIT = {"ß": "ss", "Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o", "Œ": "OE", "œ": "oe",
             "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Þ": "Th", "þ": "th", "€": "EUR",
             "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "..."}


class PreviewError(ValueError):
    """The label could not be rendered even after the preview adaptations."""


def _hex_escape(data: bytes, indicator: bytes = b"\\") -> str:
    return "".join(chr(b) if b in _SAFE else f"{indicator.decode('latin-1')}{b:02X}"
                   for b in data)


def field_hex(text: str, barcode: str | None = None, dm_escape: str = "~") -> str:
    """Encode ``text`` for ``^FH\\^FD...^FS`` so that it can never be read as ZPL commands."""
    if barcode == "code128":
        bad = [c for c in text if not 0x20 <= ord(c) <= 0x7E]
        if bad:
            raise ValueError(f"Code 128 takes printable ASCII only, got {bad[0]!r}")
        text = text.replace(">", ">0")  # '>' starts an invocation code; '>0' is a literal '>'
    elif barcode == "datamatrix":
        text = text.replace(dm_escape, dm_escape * 2)  # doubled escape char is a literal
    elif barcode is not None:
        raise ValueError(f"unknown barcode kind {barcode!r} (code128, datamatrix or None)")
    return _hex_escape(text.encode("utf-8"))


def split_labels(data: bytes) -> list[bytes]:
    """Split a raw printer stream into its ``^XA ... ^XZ`` labels (control commands ignored)."""
    return split_stream(data)[0]


def ascii_fallback(text: str) -> str:
    """Transliterate to ASCII for preview fonts: 'Müller' -> 'Muller', unknown -> '?'."""
    out = []
    for ch in text:
        if ord(ch) < 0x80:
            out.append(ch)
        elif ch in _TRANSLIT:
            out.append(_TRANSLIT[ch])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch)
                           if c.isascii() and (c.isalnum() or c == " "))
            out.append(base or "?")
    return "".join(out)


def _decode_field(body: bytes, indicator: bytes | None) -> bytes:
    if indicator is None:
        return body
    out, i = bytearray(), 0
    while i < len(body):
        if body[i:i + 1] == indicator and i + 3 <= len(body):
            try:
                out.append(int(body[i + 1:i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(body[i])
        i += 1
    return bytes(out)


def _text_for_ci(data: bytes, ci: int) -> str:
    encoding = {28: "utf-8", 29: "utf-16-be", 30: "utf-16-le", 27: "cp1252"}.get(ci, "latin-1")
    return data.decode(encoding, errors="replace")


def _short(raw: bytes) -> str:
    text = raw.strip().decode("ascii", errors="replace").replace("\ufffd", "?")
    return text if len(text) <= 24 else text[:21] + "..."


def _font_path(arg: bytes) -> str | None:
    arg = arg.strip()
    return arg.decode("ascii").upper() if _FONT_PATH.match(arg) else None


def preview_safe(zpl: bytes, fonts: Mapping[str, bytes] | None = None
                 ) -> tuple[bytes, list[str]]:
    """Return a copy of ``zpl`` that zplkit can render, plus the adaptations made.

    ``fonts`` are the TrueType files the printer holds (``{"E:NAME.TTF": data}``): text in
    them keeps its glyphs; text in a resident font is transliterated.
    """
    from zplkit.parse import parse  # lazy: the drivers work without zplkit installed

    supplied = {path.upper() for path in (fonts or {})}
    adaptations: list[str] = []
    out: list[bytes] = []
    ci, indicator, barcode, field_no = 0, None, False, 0
    assigned: dict[str, str] = {}          # ^CW letter -> font path
    default_font, field_font = "0", None   # ^CF font; the open field's ^A font (or path)
    for element in parse(bytes(zpl)).elements:
        raw = bytes(element)
        name = raw[1:3].upper() if element.kind in ("format_command", "control_command") else b""
        if element.kind == "control_command":
            adaptations.append(f"removed control command {_short(raw)} (not part of the label)")
            continue
        if element.kind == "format_command" and name in _JOB_CONTROL:
            adaptations.append(f"removed {_short(raw)} (job control; the preview shows one copy)")
            continue
        if name == b"CI":
            digits = bytes(c for c in raw[3:].split(b",")[0] if 0x30 <= c <= 0x39)
            ci = int(digits) if digits else 0
        elif name == b"CW":
            letter, _, path = raw[3:].partition(b",")
            if letter.strip() and (font := _font_path(path)):
                assigned[letter.strip()[:1].decode("latin-1").upper()] = font
        elif name == b"CF" and raw[3:4].strip(b", "):
            default_font = raw[3:4].decode("latin-1").upper()
        elif name[:1] == b"A" and element.kind == "format_command" and len(raw) > 2:
            letter = raw[2:3].decode("latin-1").upper()
            field_font = _font_path(raw.split(b",")[-1]) if letter == "@" else letter
        elif name == b"FH":
            arg = raw[3:4]
            indicator = arg if arg and arg not in (b"\r", b"\n", b" ") else b"_"
        elif name[:1] == b"B" and name != b"BY":
            barcode = True
        elif name in (b"FD", b"FV"):
            field_no += 1
            font = field_font or default_font
            if assigned.get(font, font) not in supplied:
                raw = _adapt_text_field(raw, ci, indicator, barcode, field_no, adaptations)
        elif name == b"FS":
            indicator, barcode, field_font = None, False, None
        out.append(raw)
    return b"".join(out), adaptations


def _adapt_text_field(raw, ci, indicator, barcode, field_no, adaptations) -> bytes:
    """Transliterate a non-ASCII text field; barcodes keep their bytes (they encode them)."""
    body = raw[3:]
    data = _decode_field(body, indicator)
    if barcode or all(b < 0x80 for b in data):
        return raw
    ascii_text = ascii_fallback(_text_for_ci(data, ci))
    if indicator is not None:
        new_body = _hex_escape(ascii_text.encode("ascii"), indicator).encode("ascii")
    else:
        # Unescaped field: keep what was there but never let a prefix in.
        new_body = ascii_text.replace("^", "?").replace("~", "?").encode("ascii")
    adaptations.append(f"field {field_no}: non-ASCII text shown transliterated to ASCII "
                       "(the preview fonts lack those glyphs)")
    return raw[:3] + new_body


def preview_png(zpl: bytes, dpi: int = 203, width_dots: int | None = None,
                height_dots: int | None = None, fonts: Mapping[str, bytes] | None = None
                ) -> tuple[bytes, list[str]]:
    """Render the first label of ``zpl`` to PNG; returns (png, adaptations made for zplkit).

    ``fonts`` maps printer paths (``E:NAME.TTF``) to the TrueType files the printer holds.
    """
    import zplkit
    from zplkit.rendering import Limits

    # Default canvas: a 4 x 6 inch label at the requested resolution; ^PW/^LL still win.
    # The zd621 profile follows current firmware (e.g. Data Matrix escape "~").
    options = zplkit.Options(profile="zd621", dpi=dpi,
                             width=width_dots or round(4 * dpi),
                             height=height_dots or round(6 * dpi))
    fonts = {path.upper(): data for path, data in (fonts or {}).items()}
    try:
        safe, adaptations = preview_safe(zpl, fonts)
        # The fonts the label names go ahead of it, as the printer received them earlier.
        used = [path for path in fonts if path.encode("ascii") in safe.upper()]
        head = b"".join(_preview_download(path, fonts[path]) for path in used)
        limits = Limits(input_bytes=len(head) + max(len(safe), 1024 * 1024))
        document = zplkit.render(head + safe, options, limits=limits)
        if not document.labels:
            raise PreviewError("no ^XA...^XZ label to preview")
        png = document.labels[0].png()
    except ValueError as exc:  # ParseError / RenderError / OutputError are ValueErrors
        if isinstance(exc, PreviewError):
            raise
        raise PreviewError(f"preview failed: {exc}") from exc
    if len(document.labels) > 1:
        adaptations.append(f"preview shows label 1 of {len(document.labels)}")
    return png, adaptations


@functools.lru_cache(maxsize=8)
def _preview_download(path: str, data: bytes) -> bytes:
    """``~DY`` of a font for zplkit, built once per font: binary data after its byte count.

    Not ASCII hex (twice the size, decoded digit by digit: ~10 ms of CPU a preview for the
    bundled font) nor ``:B64:``; the file zplkit stores, hence the drawing, is the same.
    """
    drive, _, filename = path.partition(":")
    return (f"~DY{drive}:{filename.rsplit('.', 1)[0]},B,T,{len(data)},,".encode("ascii")
            + data)
