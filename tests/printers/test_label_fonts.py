"""The label font: ~DY download, framing, the simulator's flash and ^HW, and previews with it."""
import io
import json
import urllib.request

import pytest
from PIL import Image

from printers import (FontError, PrinterSimulator, SimPrinter, ZplStream, ensure_font,
                      field_hex, preview_png, printer_for_uri, reset_simulated_printers,
                      send_job)
from printers.fonts import find_font, load_font, parse_download

NAME = "뉴로허브 센서"


@pytest.fixture(scope="module")
def font():
    return load_font(find_font(""))  # the bundled label font


def hangul_label(font, text=NAME) -> bytes:
    return (f"^XA^CI28{font.assign_command()}^PW400^LL120^FO16,12^AKN,24,24"
            f"^FH\\^FD{field_hex(text)}^FS^XZ").encode("ascii")


def ink(png: bytes) -> int:
    gray = Image.open(io.BytesIO(png)).convert("L")
    return gray.point(lambda p: p < 128 and 255).histogram()[255]


def test_download_command_round_trips_with_its_crc(font):
    command = font.download_command()
    assert command.startswith(f"~DYE:{font.name},A,T,{len(font.data)},,:B64:".encode())
    assert len(font.name) == 8 and font.path == f"E:{font.name}.TTF"
    assert parse_download(command) == (font.path, font.data)
    tampered = command.replace(b":B64:A", b":B64:B", 1) if b":B64:A" in command else \
        command[:40] + bytes([command[40] ^ 1]) + command[41:]
    with pytest.raises(FontError, match="CRC"):
        parse_download(tampered)
    hex_form = f"~DYE:HEXFONT,A,T,{len(font.data)},,".encode() + font.data.hex().encode()
    assert parse_download(hex_form) == ("E:HEXFONT.TTF", font.data)


def test_stream_frames_a_download_however_it_is_split(font):
    label = hangul_label(font)
    # Binary data may hold ^ and ~ bytes: its byte count, not a prefix, ends it.
    binary = b"~DYE:BIN,B,T,8,,^XA~JR^X" + b"^XA^FDafter^FS^XZ"
    small = b"~DYE:HEX,A,T,4,,00010000"
    for command, sizes in ((font.download_command(), (997, 65536)), (small, (1, 3))):
        data = command + label + binary
        for size in sizes:
            stream, events = ZplStream(), []
            for i in range(0, len(data), size):
                events += stream.feed(data[i:i + size])
            assert [(e.kind, e.name) for e in events] == [
                ("control", "DY"), ("label", "XZ"), ("control", "DY"), ("label", "XZ")]
            assert events[0].data == command.rstrip(b"\r\n") and events[1].data == label
            assert events[2].data == b"~DYE:BIN,B,T,8,,^XA~JR^X"
            assert events[3].data == b"^XA^FDafter^FS^XZ"


def test_tcp_simulator_stores_the_font_reports_it_and_draws_hangul_with_it(font):
    label = hangul_label(font)
    with PrinterSimulator(control_port=0, render=True) as sim:
        printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}")
        assert printer.files("E:*.TTF") == {}  # ^HW: nothing stored yet
        printer.send(font.download_command())
        assert printer.files("E:*.TTF") == {font.path: len(font.data)}
        assert printer.files(font.path) == {font.path: len(font.data)}
        assert printer.files("E:OTHER.TTF") == {}
        send_job(printer, label)
        with urllib.request.urlopen(f"http://127.0.0.1:{sim.control_port}/status") as resp:
            files = json.loads(resp.read())["files"]
        assert files == {font.path: {"bytes": len(font.data), "sha256": font.sha256,
                                     "downloads": 1}}
        assert sim.label_count == 1  # the ^HW queries printed nothing
        (printed,) = sim.labels()
        assert printed.render_error is None and printed.adaptations == []
        expected, adaptations = preview_png(label, dpi=203, fonts={font.path: font.data})
        assert printed.png == expected and adaptations == []
        # The same field with "??" (what a font without Hangul shows) has far less ink.
        question, _ = preview_png(hangul_label(font, "??"), fonts={font.path: font.data})
        assert ink(printed.png) > 3 * ink(question)


def test_a_label_naming_a_font_the_printer_lacks_is_a_render_error(font):
    with PrinterSimulator(render=True) as sim:
        send_job(printer_for_uri(f"tcp://127.0.0.1:{sim.port}"), hangul_label(font))
        (printed,) = sim.labels()
        assert printed.render_error and font.path in printed.render_error


def test_sim_and_file_printers_list_what_they_were_sent(font, tmp_path):
    reset_simulated_printers()
    sim = SimPrinter("fonts")
    assert sim.files(font.path) == {}
    assert ensure_font(sim, font) is True and ensure_font(sim, font) is False  # sent once
    assert sim.files("E:*.TTF") == {font.path: len(font.data)}
    assert sim.device.downloads == {font.path: 1}
    reset_simulated_printers()
    files = printer_for_uri(f"file://{tmp_path}")
    assert files.files(font.path) == {}
    files.send(font.download_command(), job_id=f"font-{font.name}")
    assert list(files.files("E:*.TTF")) == [font.path]
    with pytest.raises(ValueError, match="pattern"):
        files.files("E:../../etc.TTF")


def test_find_font_names_where_it_looked_and_refuses_non_truetype(tmp_path):
    with pytest.raises(FontError, match="no font file NoSuchFont.ttf in .*fonts"):
        find_font("NoSuchFont.ttf")
    with pytest.raises(FontError, match="no font file"):
        find_font(str(tmp_path / "missing.ttf"))
    for magic, reason in ((b"ttcf", "collection"), (b"OTTO", "CFF"), (b"%PDF", "not a TrueType")):
        path = tmp_path / f"{reason.replace(' ', '_')}.ttf"
        path.write_bytes(magic + b"\0" * 64)
        with pytest.raises(FontError, match=reason):
            find_font(str(path))
        with pytest.raises(FontError, match=reason):
            load_font(str(path))


def _zplkit_png(data: bytes) -> bytes:
    """zplkit's own drawing of ``data`` on preview_png's default canvas (4 x 6 in at 203 dpi)."""
    import zplkit
    from zplkit.rendering import Limits
    options = zplkit.Options(profile="zd621", dpi=203, width=812, height=1218)
    return zplkit.render(data, options, limits=Limits(input_bytes=len(data) + 1024)
                         ).labels[0].png()


def test_preview_hands_zplkit_the_font_as_binary_and_draws_what_the_printer_gets(
        font, monkeypatch):
    # zplkit takes only ZPL bytes, so the font goes with every preview; ASCII hex (the old form)
    # doubled it to 1.4 MB that zplkit decoded digit by digit (~10 ms CPU more per preview).
    import zplkit
    real_render, inputs = zplkit.render, []

    def recording_render(data, *args, **kwargs):
        inputs.append(bytes(data))
        return real_render(data, *args, **kwargs)

    monkeypatch.setattr(zplkit, "render", recording_render)
    label = hangul_label(font)
    previews = [preview_png(label, fonts={font.path: font.data}) for _ in range(3)]
    assert len(inputs) == 3 and all(data == inputs[0] for data in inputs)
    assert font.data in inputs[0], "the font's own bytes, not an encoding of them"
    assert len(inputs[0]) < len(font.data) + len(label) + 64
    monkeypatch.undo()
    # The same pixels as from the download the printer receives (:B64:) and from ASCII hex.
    hex_download = (f"~DY{font.path[:-4]},A,T,{len(font.data)},,".encode()
                    + font.data.hex().upper().encode() + b"\r\n")
    for download in (font.download_command(), hex_download):
        assert previews[0] == (_zplkit_png(download + label), [])
    assert all(preview == previews[0] for preview in previews)
