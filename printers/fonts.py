"""TrueType label fonts: stored on a Zebra printer once with ``~DY``, used in labels via ``^CW``.

Zebra's resident fonts hold ASCII and some Latin-1, no Hangul. A label that carries Korean text
needs a Unicode TrueType font in the printer's flash and ``^CI28`` (UTF-8 field data):

- ``~DYE:NH1A2B3C,A,T,<bytes>,,:B64:<base64>:<crc>`` stores the font as ``E:NH1A2B3C.TTF``
  (ZPL II ``~DY``: ``d:f`` location and a name of at most 8 characters, ``A`` = ASCII data,
  ``T`` = TrueType, ``t`` = the file's size in bytes, ``w`` unused for fonts; the data is
  Zebra's ``:B64:`` encoding, base64 plus the CRC-16/XMODEM of the base64 text);
- every label maps a font letter to it: ``^CWK,E:NH1A2B3C.TTF``; text fields use ``^AK``.
- ``^HWE:NH1A2B3C.TTF`` asks the printer for a directory listing, so a sender can tell whether
  the font is already there (it then sends it only once per printer, not with every label).

The default label font ships with this package: NAVER's NanumSquare Regular (``data/``, SIL Open
Font License 1.1, its licence beside it): 724 KB of TrueType outlines covering all 11,172 modern
Hangul syllables and ASCII, small enough for any Zebra's flash (a full Noto CJK is 20-50 MB, and
CFF outlines in a collection, which ``~DY`` cannot store). Shipping it means the same bytes, hence
the same printer file name and label sha256, on every server, station and CI machine, with no
system package to install first. ``LABEL_FONT`` may name another TrueType file.

The stored name comes from the file's sha256: a different font is a different file, never a
stale one under the same name. Only plain TrueType files are accepted (not collections (``.ttc``)
or CFF-outline OpenType): that is what the printer's ``T`` object type stores and renders.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field

FONT_LETTER = "K"               # ^CW letter of the label font (no resident font uses K)
MAX_FONT_BYTES = 16 * 1024 * 1024  # the preview renderer's font limit; printer flash is smaller
_TRUETYPE = (b"\x00\x01\x00\x00", b"true")
_HEADER_MAX = 128               # "~DYE:NH1A2B3C,A,T,16777216,," is far shorter
_DY_HEADER = re.compile(rb"^([A-Za-z]):([A-Za-z0-9_]{1,8})(?:\.[A-Za-z]{0,3})?,([ABCP]),"
                        rb"([A-Za-z]{1,3}),(\d{1,9}),(\d*),$")


class FontError(ValueError):
    """A font file or a ``~DY`` download that cannot be used; the message says why."""


@dataclass(frozen=True)
class LabelFont:
    """A TrueType font for labels, with the name it has on the printer."""

    data: bytes = field(repr=False)
    source: str = ""

    @functools.cached_property  # labels name the font by it: hash the file once, not per label
    def sha256(self) -> str:
        """Hex sha256 of the font file."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def name(self) -> str:
        """The 8-character object name on the printer (``NH`` + 6 hex digits of the sha256)."""
        return "NH" + self.sha256[:6].upper()

    @property
    def path(self) -> str:
        """Where the printer stores it: ``E:NHxxxxxx.TTF`` (flash survives power cycles)."""
        return f"E:{self.name}.TTF"

    def download_command(self, path: str | None = None) -> bytes:
        """The ``~DY`` command that stores the font on the printer (as ``path``, or its own)."""
        drive, _, filename = (path or self.path).partition(":")
        encoded = base64.b64encode(self.data)
        crc = binascii.crc_hqx(encoded, 0)
        return (f"~DY{drive}:{filename.rsplit('.', 1)[0]},A,T,{len(self.data)},,:B64:"
                .encode("ascii") + encoded + f":{crc:04X}\r\n".encode("ascii"))

    def assign_command(self, letter: str = FONT_LETTER) -> str:
        """``^CW`` mapping ``letter`` to this font for one label."""
        return f"^CW{letter},{self.path}"


def check_truetype(data: bytes, source: str = "font") -> None:
    """Raise FontError unless ``data`` is a single TrueType font a Zebra printer can store."""
    if len(data) > MAX_FONT_BYTES:
        raise FontError(f"{source}: {len(data)} bytes; a label font may have at most "
                        f"{MAX_FONT_BYTES} (printer flash is limited)")
    magic = data[:4]
    if magic == b"ttcf":
        raise FontError(f"{source} is a font collection (.ttc); use a single TrueType .ttf")
    if magic == b"OTTO":
        raise FontError(f"{source} has CFF (PostScript) outlines; Zebra printers store "
                        "TrueType outlines: use a .ttf with glyf outlines")
    if magic not in _TRUETYPE:
        raise FontError(f"{source} is not a TrueType font file")


def load_font(path: str) -> LabelFont:
    """Read and check a TrueType file; FontError (naming the path) if it is missing or unfit."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FONT_BYTES + 1)
    except OSError as exc:
        raise FontError(f"cannot read label font {path}: {exc.strerror or exc}") from None
    check_truetype(data, path)
    return LabelFont(data, path)


def parse_download(command: bytes) -> tuple[str, bytes]:
    """Decode a complete ``~DY`` TrueType download into (``E:NAME.TTF``, font bytes)."""
    if command[1:3].upper() != b"DY":
        raise FontError("not a ~DY command")
    parts = command[3:].split(b",", 5)
    if len(parts) != 6:
        raise FontError("~DY needs d:f,b,x,t,w,data")
    match = _DY_HEADER.match(b",".join(parts[:5]) + b",")
    if not match:
        raise FontError("malformed ~DY header")
    drive, name, fmt, ext, size = (match.group(i).decode("ascii") for i in range(1, 6))
    if ext.upper() not in ("T", "TTF"):
        raise FontError(f"~DY object type {ext!r} is not a TrueType font (T)")
    body = parts[5].strip()
    if fmt.upper() == "B":
        data = body
    elif body[:5].upper() == b":B64:":
        payload, _, crc = body[5:].rpartition(b":")
        if f"{binascii.crc_hqx(payload, 0):04X}" != crc.decode("ascii", "replace").upper():
            raise FontError("~DY :B64: CRC mismatch")
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise FontError("~DY :B64: data is not base64") from None
    else:
        try:
            data = bytes.fromhex(body.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise FontError("~DY data is not ASCII hex") from None
    if len(data) != int(size):
        raise FontError(f"~DY declared {size} bytes, got {len(data)}")
    check_truetype(data, f"~DY {drive}:{name}")
    return f"{drive.upper()}:{name.upper()}.TTF", data


def download_end(buf, start: int) -> int | None:
    """End offset of the ``~DY`` command whose parameters begin at ``start`` in ``buf``.

    None while more bytes are needed; ``start`` when the header is not one we can size (the
    framer then treats it like any other command). Handles binary data (its byte count),
    ``:B64:``/``:Z64:`` (up to the CRC) and ASCII hex (two digits per byte).
    """
    header_end, commas = start, 0
    while commas < 5:
        if header_end >= len(buf):
            return None if header_end - start < _HEADER_MAX else start
        if header_end - start >= _HEADER_MAX or buf[header_end] in (0x5E, 0x7E):
            return start
        commas += buf[header_end] == 0x2C
        header_end += 1
    params = bytes(buf[start:header_end]).split(b",")
    fmt, size = params[1].strip().upper(), params[3].strip()
    if not size.isdigit():
        return start
    if fmt == b"B":
        end = header_end + int(size)
        return end if end <= len(buf) else None
    head = bytes(buf[header_end:header_end + 5]).upper()
    if len(head) < 5:
        return None
    if head in (b":B64:", b":Z64:"):
        colon = buf.find(b":", header_end + 5)
        if colon < 0 or colon + 5 > len(buf):
            return None
        return colon + 5
    end = header_end + 2 * int(size)
    return end if end <= len(buf) else None


def directory_listing(files: dict[str, bytes], pattern: str, free: int = 0) -> bytes:
    """The ``^HW`` answer for ``pattern`` (``E:*.TTF``...), framed as a Zebra printer does."""
    drive, _, spec = pattern.upper().partition(":")
    lines = [f"-DIR {drive}:{spec or '*.*'}"]
    for path in sorted(files):
        if path.startswith(f"{drive}:") and fnmatch.fnmatchcase(path[2:], spec or "*.*"):
            lines.append(f"*{path}  {len(files[path]):>7}")
    lines += ["", f"-{free} bytes free"]
    return b"\x02\r\n" + "\r\n".join(lines).encode("ascii") + b"\r\n\x03"


def parse_listing(raw: bytes) -> dict[str, int]:
    """Objects in a ``^HW`` answer: ``{"E:NAME.TTF": size}``."""
    out = {}
    for line in raw.decode("ascii", "replace").splitlines():
        line = line.strip("\x02\x03 ")
        if line.startswith("*"):
            fields = line[1:].split()
            if fields:
                size = fields[1] if len(fields) > 1 and fields[1].isdigit() else "0"
                out[fields[0].upper()] = int(size)
    return out


def font_dirs() -> list[str]:
    """The system font directories, per the XDG base directory spec (user's first)."""
    home = os.path.expanduser("~")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    data_dirs = (os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")
    return [os.path.join(data_home, "fonts"), os.path.join(home, ".fonts")] + \
        [os.path.join(d, "fonts") for d in data_dirs if d]


BUNDLED_FONT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                            "NanumSquareR.ttf")


def find_font(name: str) -> str:
    """The path of ``name``: a path to a TrueType file, a file name in the system font
    directories, or (empty) the bundled font.

    Raises FontError saying where it looked; the file must be a TrueType font (``check_truetype``).
    """
    if not name:
        path = BUNDLED_FONT
        if not os.path.isfile(path):
            raise FontError(f"the bundled label font {path} is missing (broken install?)")
    elif os.sep in name or (os.altsep and os.altsep in name):
        path = os.path.abspath(os.path.expanduser(name))
        if not os.path.isfile(path):
            raise FontError(f"no font file {path}")
    else:
        found = [os.path.join(root, name) for base in font_dirs() if os.path.isdir(base)
                 for root, _dirs, files in sorted(os.walk(base)) if name in files]
        if not found:
            raise FontError(f"no font file {name} in {', '.join(font_dirs())}")
        path = found[0]
    with open(path, "rb") as handle:
        check_truetype(handle.read(4), path)
    return path
