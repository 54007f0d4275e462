"""Firmware upload forms read with streaming-form-data, plus what the endpoint needs around it.

The library (Cython) finds the delimiters and hands each part's bytes to a target; it skips
nothing we allow (strict mode: a part under any other name is refused), but it has no notion of
the end of the body, bounds neither part headers nor parts without a name, and does not take a
preamble. This adapter adds those: a bounded preamble skip, one budget for the text fields, one
for everything that reaches no target (delimiters, headers, nameless parts), a part count,
duplicate and wrong-kind parts refused by name, and a check that the closing delimiter came.
"""
from __future__ import annotations

from email.errors import MessageError
from typing import Callable, Iterable, Protocol

from streaming_form_data import ParseFailedException, StreamingFormDataParser
from streaming_form_data.parser import UnexpectedPartException, parse_content_boundary
from streaming_form_data.targets import BaseTarget

# Delimiters, part headers and nameless parts of one form (bytes that reach no target). The
# parser keeps an unfinished header line in memory, so this also bounds that.
MAX_FRAMING_BYTES = 16 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024  # text before the first delimiter (clients send none)


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data (or ended early)."""


class FormTooLarge(Exception):
    """Text fields or the number of parts exceed their limits."""


class PartRefused(Exception):
    """A part this form does not take: unknown name, sent twice, or file instead of text."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


class Sink(Protocol):
    """Where the file part's bytes go (e.g. a hashing spool)."""

    def write(self, data: bytes) -> object: ...


MAX_BOUNDARY = 200


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type; MultipartError if absent or invalid."""
    try:
        boundary = parse_content_boundary({"Content-Type": content_type})
    except (ParseFailedException, ValueError, MessageError) as exc:
        raise MultipartError(str(exc)) from None
    # ASCII without quotes, so the header round-trips below. RFC 2046 says at most 70
    # characters, but real clients exceed it (Werkzeug's own encoder makes up to ~74), so the
    # cap is only there to bound the parser's work.
    if not 0 < len(boundary) <= MAX_BOUNDARY or not boundary.isascii() or b'"' in boundary \
            or b"\\" in boundary:
        raise MultipartError(f"the boundary must be 1 to {MAX_BOUNDARY} plain ASCII characters")
    return boundary


class _Form:
    """What the targets of one form share: limits, counters and the text fields read."""

    def __init__(self, max_field_bytes: int, max_parts: int, open_file):
        self.budget, self.max_parts, self.open_file = max_field_bytes, max_parts, open_file
        self.parts = self.delivered = 0
        self.fields: dict[str, str] = {}
        self.file: tuple[str, Sink] | None = None
        self.targets: list[_Target] = []


class _Target(BaseTarget):
    """One registered part name: a text field (kept in memory) or the file (sent to a sink)."""

    def __init__(self, form: _Form, name: str, is_file: bool):
        super().__init__()
        self.form, self.name, self.is_file = form, name, is_file
        self.seen = self.finished = False
        self.size = 0
        self.chunks: list[bytes] = []
        self.sink: Sink | None = None

    def on_start(self) -> None:
        form, filename = self.form, self.multipart_filename
        if self.seen:  # the library hands a repeated name to the same target again
            raise PartRefused(self.name, "given more than once")
        self.seen = True
        form.parts += 1
        if form.parts > form.max_parts:
            raise FormTooLarge(f"more than {form.max_parts} parts")
        if self.is_file and filename is None:
            raise PartRefused(self.name, "must be a file part (with a filename)")
        if not self.is_file and filename is not None:
            raise PartRefused(self.name, "the only file part must be the image, named file")
        if self.is_file:
            self.sink = form.open_file(filename)
            form.file = (filename, self.sink)

    def on_data_received(self, chunk: bytes) -> None:
        n = len(chunk)
        self.size += n
        self.form.delivered += n
        if self.sink is not None:
            self.sink.write(chunk)  # bytes slices: immutable, as the spool requires
            return
        self.form.budget -= n
        if self.form.budget < 0:
            raise FormTooLarge("the text fields of the form are too large")
        self.chunks.append(chunk)

    def on_finish(self) -> None:
        self.finished = True
        if not self.is_file:
            try:
                self.form.fields[self.name] = b"".join(self.chunks).decode("utf-8")
            except UnicodeDecodeError:
                raise MultipartError(f"field {self.name!r} is not UTF-8") from None


def parse_form(read: Callable[[int], bytes], boundary: bytes,
               open_file: Callable[[str], Sink], *, field_names: Iterable[str],
               file_name: str = "file", max_field_bytes: int, max_parts: int, block_size: int):
    """Read a multipart body; return ``(fields, file)``: a dict, and ``(filename, sink)`` or None.

    ``read(n)`` returns up to n bytes, ``b""`` at the end. ``open_file(filename)`` returns the
    sink for the part named ``file_name``. Raises MultipartError (malformed, truncated),
    FormTooLarge (text budget, part count) or PartRefused (unknown, repeated, wrong kind).
    """
    form = _Form(max_field_bytes, max_parts, open_file)
    parser = StreamingFormDataParser(
        {"Content-Type": f'multipart/form-data; boundary="{boundary.decode("ascii")}"'},
        strict=True)
    for name, is_file in [(n, False) for n in field_names] + [(file_name, True)]:
        form.targets.append(_Target(form, name, is_file))
        parser.register(name, form.targets[-1])
    delimiter, ender = b"\r\n--" + boundary + b"\r\n", b"\r\n--" + boundary + b"--"
    fed = 0

    def feed(chunk: bytes) -> None:
        nonlocal fed
        try:
            parser.data_received(chunk)
        except UnexpectedPartException as exc:
            raise PartRefused(exc.part_name, "not a part of this form") from None
        except (ParseFailedException, MessageError, UnicodeDecodeError) as exc:
            raise MultipartError(str(exc)) from None
        fed += len(chunk)
        if fed - form.delivered > MAX_FRAMING_BYTES:
            raise MultipartError("part headers (or parts without a name) are too large")

    head, i = _read_preamble(read, delimiter, block_size)
    keep = len(ender) + 4  # the last bytes of the body, for _check_end's empty-last-part test
    tail = bytes(head[-keep:])
    feed(bytes(head[i + 2:]))
    while chunk := read(block_size):
        feed(chunk)
        tail = (tail + chunk[-keep:])[-keep:]

    _check_end(form, parser, tail, delimiter, ender)
    return form.fields, form.file


def _read_preamble(read: Callable[[int], bytes], delimiter: bytes,
                   block_size: int) -> tuple[bytearray, int]:
    """Read up to the first delimiter; return what was read and where the delimiter's CRLF is.

    The library wants the first delimiter first: skip a preamble, bounded. A CRLF is put in
    front so a body that starts with the delimiter matches too; each read is searched once.
    """
    head, dash, start = bytearray(b"\r\n"), delimiter[:-2], 0
    while (i := head.find(dash, start)) < 0:
        if len(head) > MAX_PREAMBLE_BYTES:
            raise MultipartError("no multipart boundary found")
        if not (chunk := read(block_size)):
            raise MultipartError("the body ended before the first boundary")
        start = max(0, len(head) - len(dash) + 1)
        head += chunk
    if i > MAX_PREAMBLE_BYTES:
        raise MultipartError("no multipart boundary found")
    return head, i


def _check_end(form: _Form, parser: StreamingFormDataParser, tail: bytes, delimiter: bytes,
               ender: bytes) -> None:
    """At the end of the body: finish an empty last part, or raise if the body was cut short."""
    unfinished = [t for t in form.targets if t.seen and not t.finished]
    if unfinished:
        part = unfinished[0]
        # RFC 2046 lets an empty part end right after its headers, its blank line's CRLF
        # doubling as the delimiter's (Werkzeug encodes empty parts so); the library then reads
        # the close delimiter as data. Only the last part can be such (else its data would
        # include a delimiter the library found), and then the body ends just so.
        if part.size == 0 and (tail.endswith(b"\r\n\r\n" + ender[2:])
                               or tail.endswith(b"\r\n\r\n" + ender[2:] + b"\r\n")):
            part.chunks = []
            part.on_finish()
        else:
            raise MultipartError(f"the body ended inside part {part.name!r}")
    else:
        # After the close delimiter the library ignores all input; before it, CR NUL is refused
        # in a header or delimiter line, and within a (nameless) part's data the delimiter ends
        # the part so that the CR NUL after it lands in a header: this probe tells them apart.
        try:
            parser.data_received(b"\r\x00" + delimiter + b"\r\x00")
        except (ParseFailedException, MessageError, UnicodeDecodeError):
            raise MultipartError("the body ended before the closing boundary") from None
