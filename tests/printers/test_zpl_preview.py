"""preview_png: a real PNG of the label, with the adaptations zplkit needed, decodable barcodes."""
import io

import pytest
import zxingcpp
from PIL import Image

from printers import PreviewError, ascii_fallback, preview_png, preview_safe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(png: bytes) -> Image.Image:
    assert png.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_plain_label_renders_at_the_requested_size():
    label = b"^XA^FO20,20^A0N,30,0^FDHello^FS^XZ"
    png, adaptations = preview_png(label)
    image = _image(png)
    assert image.format == "PNG" and adaptations == []
    assert image.size == (812, 1218)  # 4 x 6 in at 203 dpi
    png300, _ = preview_png(label, dpi=300)
    assert _image(png300).size == (1200, 1800)
    small, _ = preview_png(label, width_dots=400, height_dots=200)
    assert _image(small).size == (400, 200)
    sized, _ = preview_png(b"^XA^PW300^LL150^FO20,20^A0N,30,0^FDx^FS^XZ")
    assert _image(sized).size == (300, 150)  # the label's own ^PW/^LL win


def test_pq_and_non_ascii_a0_field_are_adapted_and_reported():
    label = ("^XA^CI28^FO20,20^A0N,40,0^FDMüller Ω 공정^FS"
             "^FO20,100^BY2^BCN,80,Y,N,N^FDNH-100^FS^PQ3^XZ").encode()
    png, adaptations = preview_png(label)
    image = _image(png)
    assert any("^PQ3" in a for a in adaptations)
    assert any("field 1" in a and "non-ASCII" in a for a in adaptations)
    assert len(adaptations) == 2
    assert all(a.isascii() for a in adaptations)  # fit for an HTTP header
    assert [(b.format.name, b.text) for b in zxingcpp.read_barcodes(image)] == [
        ("Code128", "NH-100")]


def test_preview_safe_copy_keeps_barcode_bytes_and_rewrites_text():
    label = ("^XA^CI28^FO20,20^A0N,40,0^FH\\^FDM\\C3\\BCller^FS"
             "^FO20,100^BQN,2,4^FDQA,Müller^FS~HS^XZ").encode()
    safe, adaptations = preview_safe(label)
    assert b"^FDMuller" in safe                    # hex-escaped UTF-8 text transliterated
    assert "^FDQA,Müller".encode() in safe         # the QR keeps its UTF-8 data
    assert b"~HS" not in safe and any("~HS" in a for a in adaptations)
    image = _image(preview_png(label)[0])
    assert [b.text for b in zxingcpp.read_barcodes(image)] == ["Müller"]


def test_code128_decodes_from_the_preview():
    png, _ = preview_png(b"^XA^FO40,40^BY3^BCN,120,Y,N,N^FDLOT-2024-000123^FS^XZ")
    found = zxingcpp.read_barcodes(_image(png))
    assert [(b.format.name, b.text) for b in found] == [("Code128", "LOT-2024-000123")]


def test_multiple_labels_preview_the_first_and_say_so():
    label = b"^XA^FO40,40^BCN,80^FDFIRST^FS^XZ^XA^FO40,40^BCN,80^FDSECOND^FS^XZ"
    png, adaptations = preview_png(label)
    assert [b.text for b in zxingcpp.read_barcodes(_image(png))] == ["FIRST"]
    assert adaptations == ["preview shows label 1 of 2"]


def test_unrenderable_label_raises_preview_error():
    with pytest.raises(PreviewError):
        preview_png(b"^XA^FO20,20^A@N,30,30,E:NOFONT.TTF^FDx^FS^XZ")
    with pytest.raises(PreviewError):
        preview_png(b"no label here")


def test_ascii_fallback():
    assert ascii_fallback("Müller Straße Ø €") == "Muller Strasse O EUR"
    assert ascii_fallback("공정") == "??"
