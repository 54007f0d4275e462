"""field_hex makes user text inert; split_labels frames streams like a printer does."""
import io

import pytest
import zxingcpp
from PIL import Image

from printers import (PrinterSimulator, ZplStream, field_hex, preview_png, printer_for_uri,
                      send_job, split_labels)

ATTACK = "^XZ^XA^FO0,0^FDPWN^FS~JR"


def test_field_hex_escapes_everything_outside_the_safe_set():
    encoded = field_hex("A-1 ^~\\_\x03\r\nü")
    assert encoded == "A-1 \\5E\\7E\\5C\\5F\\03\\0D\\0A\\C3\\BC"
    assert not set(encoded) & {"^", "~"}
    assert encoded.isascii()
    # every backslash starts a two-digit escape: nothing else can follow the indicator
    parts = encoded.split("\\")[1:]
    assert all(len(p) >= 2 and int(p[:2], 16) >= 0 for p in parts)


def test_field_hex_barcode_layers():
    assert field_hex("a>b", barcode="code128") == "a\\3E0b"  # '>0' is a literal '>'
    assert field_hex("a~b", barcode="datamatrix") == "a\\7E\\7Eb"
    with pytest.raises(ValueError):
        field_hex("caf\u00e9", barcode="code128")
    with pytest.raises(ValueError):
        field_hex("x", barcode="pdf417")


def _label(field_cmd: bytes, data: str) -> bytes:
    return b"^XA^FO60,60^BY2" + field_cmd + b"^FH\\^FD" + data.encode() + b"^FS^XZ"


def test_split_labels_frames_streams():
    a, b = _label(b"^BCN,80,Y,N,N", "A"), _label(b"^BCN,80,Y,N,N", "B")
    stream = b"~HS\r\n" + a + b"\r\n~JR\r\n  " + b + b"\r\n^XA^FDunfinished"
    assert split_labels(stream) == [a, b]
    assert split_labels(b"^xa^fdlower^fs^xz") == [b"^xa^fdlower^fs^xz"]
    # ^GFB binary data may contain "^XZ": it is skipped by its byte count
    binary = b"^XA^FO0,0^GFB,8,8,1,^XZ\x00~JR\xff^FS^XZ"
    assert split_labels(binary) == [binary]
    # prefix change with ^CC
    assert split_labels(b"^XA^CC+ +FDx+FS+CC^ ^XZ") == [b"^XA^CC+ +FDx+FS+CC^ ^XZ"]


def test_split_is_the_same_byte_by_byte():
    data = b"~HS" + _label(b"^BCN", "x") + b"^XA^FO0,0^GFB,4,4,1,^XZ\x00\x7e^FS^XZ"
    stream, events = ZplStream(), []
    for i in range(len(data)):
        events += stream.feed(data[i:i + 1])
    assert [e.kind for e in events] == ["control", "label", "label"]
    assert [e.data for e in events if e.kind == "label"] == split_labels(data)


def test_unescaped_attack_would_split_the_label():
    # The control case: without field_hex the "field" really ends the label and injects ~JR.
    raw = b"^XA^FO0,0^BCN^FD" + ATTACK.encode() + b"^FS^XZ"
    assert len(split_labels(raw)) == 2
    stream = ZplStream()
    assert "JR" in [e.name for e in stream.feed(raw) if e.kind == "control"]


def test_escaped_attack_is_one_label_on_the_simulator(tmp_path):
    label = _label(b"^BCN,80,Y,N,N", field_hex(ATTACK, barcode="code128"))
    assert split_labels(label) == [label]
    with PrinterSimulator(out_dir=str(tmp_path), render=True) as sim:
        send_job(printer_for_uri(f"tcp://127.0.0.1:{sim.port}"), label)
        assert sim.label_count == 1
        assert list(sim.state.control_commands) == ["HS"]  # no ~JR reached the printer
        stored = sim.labels()[0]
        assert stored.zpl == label and stored.render_error is None
        with Image.open(stored.png_path) as image:
            decoded = [b.text for b in zxingcpp.read_barcodes(image)]
    assert decoded == [ATTACK]


def _decode(label: bytes):
    png, _ = preview_png(label)
    return [(b.format.name, b.text) for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_escaped_attack_decodes_literally_in_code128_and_datamatrix():
    assert _decode(_label(b"^BCN,80,N,N,N", field_hex(ATTACK, barcode="code128"))) == [
        ("Code128", ATTACK)]
    dm = b"^XA^CI28^FO60,60^BXN,6,200,,,,~^FH\\^FD" + \
        field_hex(ATTACK + " \u00fc>_\\", barcode="datamatrix").encode() + b"^FS^XZ"
    assert split_labels(dm) == [dm]
    assert _decode(dm) == [("DataMatrix", ATTACK + " \u00fc>_\\")]


def test_datamatrix_without_the_barcode_layer_is_altered():
    # Shows why barcode="datamatrix" exists: "~J" becomes a control character otherwise.
    dm = b"^XA^FO60,60^BXN,6,200,,,,~^FH\\^FD" + field_hex("~JR").encode() + b"^FS^XZ"
    assert _decode(dm) == [("DataMatrix", "\nR")]
