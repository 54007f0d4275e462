"""The firmware form reader (streaming-form-data plus our adapter): exact bytes whatever the read
sizes (delimiters split across reads at every offset), limits, refused parts, and malformed or
truncated bodies (cut at every offset)."""
from __future__ import annotations

import io
import os

import pytest

from web.api.firmware_multipart import (MAX_FRAMING_BYTES, FormTooLarge, MultipartError,
                                        PartRefused, boundary_of, parse_form)

B = b"nh-b0undary"
NAMES = ("product", "version", "sha256", "notes")


class Sink:
    def __init__(self, filename):
        self.filename, self.data = filename, bytearray()

    def write(self, block):
        assert isinstance(block, (bytes, memoryview))  # immutable: the spool keeps it queued
        self.data += block


def body(*parts, preamble=b"", epilogue=b"\r\n") -> bytes:
    out = preamble
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + B + f"\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + b"--" + B + b"--" + epilogue


def parse(raw: bytes, block: int = 1 << 20, names=NAMES, **kw):
    stream, sinks = io.BytesIO(raw), []

    def open_file(filename):
        sinks.append(Sink(filename))
        return sinks[-1]
    opts = {"max_field_bytes": 1 << 20, "max_parts": 16, **kw}
    fields, file = parse_form(stream.read, B, open_file, field_names=names, block_size=block,
                              **opts)
    assert len(sinks) == (file is not None)  # a sink is opened for the file part only
    return fields, (None if file is None else (file[0], bytes(file[1].data)))


# data that looks like the delimiter without being it, line breaks at the edges
TRICKY = (b"\r\n--nh-b0undar\r\n--" + os.urandom(3000) + b"\r\n-" + b"\r\n--" + B[:-1] + b"Y"
          + b"\r\r\n\n--" + B + b"\r\n--" + B[:-1] + b"\r")


@pytest.mark.parametrize("block", [1, 2, 3, 7, len(B) + 3, 64, 1000, 1023, 1025, 4096, 1 << 20])
def test_exact_bytes_whatever_the_read_size(block):
    raw = body(("product", None, b"NH-100"), ("file", "fw.bin", TRICKY),
               ("notes", None, "ünïcode\r\nline".encode()), preamble=b"ignored\r\n")
    fields, file = parse(raw, block)
    assert fields == {"product": "NH-100", "notes": "ünïcode\r\nline"}
    assert file == ("fw.bin", TRICKY)


def test_a_large_file_part_arrives_whole_in_large_blocks():
    data = os.urandom(3 * (1 << 20) + 5)
    for block in (1 << 16, 1 << 20):
        assert parse(body(("file", "big.bin", data)), block)[1] == ("big.bin", data)


def test_a_delimiter_split_at_every_offset_is_found():
    data = os.urandom(200)
    raw = body(("file", "a.bin", data), ("notes", None, b"n"))
    for block in range(1, len(raw) + 1):
        assert parse(raw, block) == ({"notes": "n"}, ("a.bin", data)), block


def test_empty_parts_with_and_without_the_crlf_werkzeug_omits():
    assert parse(body(("file", "a.bin", b"")))[1] == ("a.bin", b"")
    assert parse(body(("notes", None, b""), ("file", "a", b"x")))[0] == {"notes": ""}
    for end in (b"--", b"--\r\n"):  # Werkzeug's encoding of an empty last part
        raw = (b"\r\n--" + B + b'\r\nContent-Disposition: form-data; name="file"; filename="a"'
               b"\r\nContent-Type: application/octet-stream\r\n\r\n--" + B + end)
        for block in (1, 5, 1 << 20):
            assert parse(raw, block)[1] == ("a", b"")


def test_limits():
    with pytest.raises(FormTooLarge):
        parse(body(("notes", None, b"x" * 101)), max_field_bytes=100)
    with pytest.raises(FormTooLarge):  # the budget is for all text fields together
        parse(body(("product", None, b"x" * 60), ("notes", None, b"y" * 60)),
              max_field_bytes=100)
    many = [f"f{i}" for i in range(17)]
    with pytest.raises(FormTooLarge):
        parse(body(*[(n, None, b"v") for n in many]), names=many)
    assert len(parse(body(*[(n, None, b"v") for n in many[:16]]), names=many)[0]) == 16


def test_a_sink_error_stops_the_upload():
    class Full(Exception):
        pass

    class Refusing:
        def write(self, block):
            raise Full()
    stream = io.BytesIO(body(("file", "a.bin", os.urandom(5000)), ("notes", None, b"n")))
    with pytest.raises(Full):
        parse_form(stream.read, B, lambda filename: Refusing(), field_names=NAMES,
                   max_field_bytes=100, max_parts=4, block_size=1000)


@pytest.mark.parametrize("raw, name", [
    (body(("other", "o.bin", b"z")), "other"),  # unknown names, file or text
    (body(("product", None, b"p"), ("extra", None, b"v")), "extra"),
    (body(("file", "a", b"1"), ("file", "b", b"2")), "file"),  # a second file part
    (body(("version", None, b"1"), ("version", None, b"2")), "version"),
    (body(("file", None, b"as text")), "file"),
    (body(("notes", "n.txt", b"as a file")), "notes"),
])
def test_unknown_repeated_or_wrong_kind_parts_are_refused_by_name(raw, name):
    for block in (3, 1 << 20):
        with pytest.raises(PartRefused) as err:
            parse(raw, block)
        assert err.value.name == name


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n",
    b"no boundary at all" * 10,
    b"--" + B,
    b"--" + B + b"\r\n",
    body(("file", "a.bin", b"data"))[:-12],  # truncated before the closing delimiter
    body(("file", "a.bin", b"data"), epilogue=b"")[:-2],  # "--" of the close delimiter missing
    body(("notes", None, b"n"))[:-len(B) - 4] + b"\r\n",  # ends right after a delimiter
    b"--" + B + b"\r\nContent-Disposition: form-data; name=\"notes\"\r\n",  # headers cut
    b"--" + B + b"\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\n",
    b"--" + B + b"\r\nContent-Disposition: form-data; na",
    b"--" + B + b"\r\nX-No-Name: 1\r\n\r\nthe body ends in a nameless part",
    b"--" + B + b"\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\nv\r\n--" + B + b"--",
    b"--" + B + b"junk\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--" + B + b"--",
    b"--" + B + b"\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\n\xff\r\n--" + B
    + b"--",
    b"--" + B + b"\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nv\r\n--" + B + b"--",
])
def test_malformed_or_truncated_bodies(raw):
    for block in (3, 1 << 20):
        with pytest.raises(MultipartError):
            parse(raw, block)


def test_a_body_cut_at_any_offset_is_refused():
    raw = body(("product", None, b"NH-100"), ("file", "a.bin", os.urandom(64)),
               ("notes", None, b"n"))
    complete = len(raw) - 2  # only the epilogue may be missing
    for block in (7, 1 << 20):
        for cut in range(len(raw) + 1):
            if cut >= complete:
                assert parse(raw[:cut], block)[0] == {"product": "NH-100", "notes": "n"}
                continue
            with pytest.raises(MultipartError):
                parse(raw[:cut], block)


def test_huge_header_block_or_preamble_is_refused():
    with pytest.raises(MultipartError):
        parse(b"--" + B + b"\r\nX: " + b"a" * 20000 + b"\r\n\r\nv\r\n--" + B + b"--")
    with pytest.raises(MultipartError):
        parse(b"p" * 100_000 + body(("notes", None, b"v")))


def test_parts_without_a_name_are_skipped_but_bounded():
    # streaming-form-data skips a part without Content-Disposition: form-data; name=... (the
    # hand-written reader refused it); what reaches no target stays under MAX_FRAMING_BYTES.
    nameless = b"--" + B + b"\r\nX-No-Disposition: 1\r\n\r\nv\r\n"
    assert parse(nameless + body(("notes", None, b"n"))) == ({"notes": "n"}, None)
    assert parse(b"--" + B + b"\r\nbroken header\r\n\r\nv\r\n--" + B + b"--") == ({}, None)
    big = b"--" + B + b"\r\nX: 1\r\n\r\n" + b"z" * MAX_FRAMING_BYTES + b"\r\n"
    for block in (1000, 1 << 20):
        with pytest.raises(MultipartError):
            parse(big + body(("notes", None, b"n")), block)


def test_a_folded_disposition_header_is_not_taken_for_the_file():
    # streaming-form-data reads each header line alone, so obsolete line folding (RFC 7230
    # 3.2.4) leaves the part without a name: skipped, and the form has no file.
    raw = (b"--" + B + b'\r\nContent-Disposition: form-data;\r\n name="file"; filename="x"\r\n'
           b"Content-Type: application/octet-stream\r\n\r\nDATA\r\n--" + B + b"--")
    assert parse(raw) == ({}, None)


def test_boundary_of_a_content_type():
    assert boundary_of(f"multipart/form-data; boundary={B.decode()}") == B
    assert boundary_of('multipart/form-data; boundary="a b:c"') == b"a b:c"
    # Werkzeug's encoder: "-"*15 + "WerkzeugFormPart_" + str(time()) + str(random()), which
    # passes RFC 2046's 70 when random() prints in exponent form (CI met one).
    longest = "-" * 15 + "WerkzeugFormPart_1795682522.1234567" + "1.2345678901234567e-05"
    assert len(longest) > 70
    assert boundary_of(f"multipart/form-data; boundary={longest}") == longest.encode()
    assert boundary_of("multipart/form-data; boundary=" + "x" * 200) == b"x" * 200
    for bad in ("multipart/form-data", "multipart/form-data; boundary=",
                "multipart/form-data; boundary=" + "x" * 201, "text/plain; boundary=x",
                "multipart/form-data; boundary=\"ü\"", ""):
        with pytest.raises(MultipartError):
            boundary_of(bad)
