"""Golden tests: each built-in template renders, and its barcodes decode to the exact data."""
import io

import pytest
import zxingcpp
from PIL import Image

from printers import preview_png, split_labels
from web.services.labels import templates as tpl

DATA = {"product_code": "NH-100", "product_name": "NeuroHub sensor", "lot_no": "LOT-20261126-0007",
        "date": "2026-11-26"}


def fonts() -> dict[str, bytes]:
    """The label font, as the printer holds it (every label names it)."""
    font = tpl.label_font()
    return {font.path: font.data}


def decode(zpl: bytes, dpi: int = 203) -> dict[str, str]:
    png, _ = preview_png(zpl, dpi=dpi, fonts=fonts())
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return {b.format.name: b.text for b in found}


@pytest.fixture()
def templates(app, db):
    with app.app_context():
        tpl.sync_builtin_templates()
        db.session.commit()
        yield {name: tpl.get_template(name) for name in tpl.BUILTIN}


@pytest.mark.parametrize("dpi", [203, 300])
def test_unit_label_code128_and_datamatrix_decode_to_the_data(templates, dpi):
    zpl = tpl.render(templates["unit"], dict(DATA, serial="SN-000123"), tpl.Profile(dpi=dpi))
    codes = decode(zpl, dpi)
    assert codes["Code128"] == "SN-000123"
    assert codes["DataMatrix"] == "(21)SN-000123(10)LOT-20261126-0007"
    assert zpl.startswith(b"^XA\n^CI28\n") and zpl.rstrip().endswith(b"^XZ")


def test_lot_traveler_carries_the_lot_number(templates):
    zpl = tpl.render(templates["lot"], dict(DATA, quantity=120, routing="SMT > FCT > PACK"))
    assert decode(zpl)["Code128"] == "LOT-20261126-0007"


def test_box_label_qr_holds_lot_product_and_quantity(templates):
    zpl = tpl.render(templates["box"], dict(DATA, quantity=120))
    assert decode(zpl)["QRCode"] == "LOT-20261126-0007;NH-100;120"


def test_data_cannot_inject_printer_commands(templates):
    evil = "^XZ^XA^FO0,0^FDPWN^FS~JR"
    zpl = tpl.render(templates["box"], dict(DATA, product_name=evil, quantity=1))
    assert len(split_labels(zpl)) == 1  # one label, however the data looks
    assert b"PWN^FS" not in zpl and b"~JR" not in zpl
    png, _ = preview_png(zpl, fonts=fonts())
    assert png.startswith(b"\x89PNG")
    # In a barcode the same data decodes back literally.
    unit = tpl.render(templates["unit"], dict(DATA, serial="A^XZ~JR>1"))
    assert len(split_labels(unit)) == 1
    assert decode(unit)["Code128"] == "A^XZ~JR>1"


def test_missing_unknown_and_too_long_variables_are_named(templates):
    with pytest.raises(tpl.TemplateError) as exc:
        tpl.render(templates["unit"], DATA)
    assert exc.value.field == "data.serial"
    with pytest.raises(tpl.TemplateError) as exc:
        tpl.render(templates["unit"], dict(DATA, serial="S1", colour="red"))
    assert exc.value.field == "data.colour"
    with pytest.raises(tpl.TemplateError) as exc:
        tpl.render(templates["unit"], dict(DATA, serial="S" * 33))
    assert exc.value.field == "data.serial" and "33" in str(exc.value)
    with pytest.raises(tpl.TemplateError) as exc:
        tpl.render(templates["unit"], dict(DATA, serial="시리얼"))  # Code 128 is ASCII only
    assert exc.value.field == "data.serial"


def test_profile_sets_size_darkness_copies_and_scales_dots(templates):
    zpl = tpl.render(templates["unit"], dict(DATA, serial="S1"),
                     tpl.Profile(dpi=300, width_dots=600, length_dots=360, darkness=20), copies=3)
    text = zpl.decode()
    assert "^PW600" in text and "^LL360" in text and "^MD20" in text and "^PQ3,0,1,Y" in text
    at203 = tpl.render(templates["unit"], dict(DATA, serial="S1")).decode()
    assert f"^PW{tpl.dots(50, 203)}" in at203 and "^MD" not in at203 and "^PQ" not in at203


def test_body_rules():
    with pytest.raises(tpl.TemplateError, match="inside"):
        tpl.check_body("^FO10,10^FD{{serial}}^FS", [{"name": "serial", "max_length": 5}])
    with pytest.raises(tpl.TemplateError, match="declared"):
        tpl.check_body("^FO10,10^FH\\^FD{{other}}^FS", [{"name": "serial", "max_length": 5}])
    with pytest.raises(tpl.TemplateError, match="XA"):
        tpl.check_body("^XA^FO10,10^FH\\^FD{{serial}}^FS", [{"name": "serial", "max_length": 5}])
    for spec in tpl.BUILTIN.values():
        tpl.check_body(spec["body"], spec["variables"])


def test_built_ins_are_versioned_not_edited(app, db, templates):
    with app.app_context():
        unit = tpl.get_template("unit")
        tpl.sync_builtin_templates()  # unchanged bodies: no new versions
        db.session.commit()
        assert tpl.get_template("unit").version == unit.version == 1
        from web.services.audit import Actor
        v2 = tpl.add_version("unit", unit.body.replace("LOT ", "LOT: "), unit.variables, 50, 30,
                             "colon", Actor(None, "admin"))
        assert v2.version == 2 and tpl.get_template("unit", 1).body == unit.body
