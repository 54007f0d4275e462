"""Label templates and previews: /api/v1/labels/templates and /api/v1/labels/preview.

Label jobs, printing, reprints, the station pull API and the DHR are in test_label_jobs_api.py.
"""
from __future__ import annotations

import hashlib
import io
import re

import pytest
import zxingcpp
from PIL import Image, ImageChops, ImageDraw, ImageFont
from sqlalchemy import text

from web.services.labels.templates import BUILTIN

from .api_helpers import assert_problem, row_counts

TEMPLATES = "/api/v1/labels/templates"
PREVIEW = "/api/v1/labels/preview"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
DATA = {"product_code": "NH-100", "product_name": "NeuroHub sensor",
        "lot_no": "LOT-20261126-0007", "date": "2026-11-26"}
UNIT = DATA | {"serial": "SN-000123"}
BUILTIN_VARS = {
    "unit": {"product_code": 32, "product_name": 40, "lot_no": 32, "date": 10, "serial": 32},
    "lot": {"product_code": 32, "product_name": 40, "lot_no": 32, "date": 10, "quantity": 7,
            "routing": 120},
    "box": {"product_code": 32, "product_name": 40, "lot_no": 32, "date": 10, "quantity": 7},
}
NEW_UNIT = {  # a valid new version of "unit": serial only, bigger barcode
    "name": "unit", "width_mm": 60, "height_mm": 25, "description": "serial only",
    "variables": [{"name": "serial", "max_length": 20}],
    "body": "^FO[[2]],[[2]]^A0N,[[3]],[[3]]^FH\\^FDSN {{serial}}^FS\n"
            "^FO[[2]],[[7]]^BY[[0.3]]^BCN,[[10]],Y,N,N^FH\\^FD{{serial|code128}}^FS",
}


# --- shared helpers (also used by test_label_jobs_api.py) -------------------------------------

def reset_label_tables(db) -> None:
    """label_templates and printers are not in conftest's TRUNCATE: start every test clean."""
    db.session.execute(text("DELETE FROM label_templates"))
    db.session.execute(text("DELETE FROM printers"))
    db.session.commit()


def label_counts(db) -> dict[str, int]:
    """row_counts plus the label tables (what a label request may write)."""
    out = row_counts(db)
    for table in ("label_jobs", "label_templates"):
        out[table] = db.session.execute(text(f"select count(*) from {table}")).scalar_one()
    db.session.rollback()
    return out


def barcodes(png: bytes) -> dict[str, str]:
    """Every barcode zxing-cpp finds in a PNG, by format name (Code128, DataMatrix, QRCode)."""
    assert png.startswith(PNG_MAGIC), png[:16]
    return {b.format.name: b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))}


def code128_box(png: bytes):
    """Where the Code 128 is in the image: (left, top, right, bottom) pixels."""
    found = [b for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
             if b.format.name == "Code128"]
    assert len(found) == 1, found
    p = found[0].position
    xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
    ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
    return min(xs), min(ys), max(xs), max(ys)


@pytest.fixture(autouse=True)
def _clean_label_tables(db):
    reset_label_tables(db)


def _preview(client, headers, template="unit", data=None, **extra):
    return client.post(PREVIEW, headers=headers, json={"template": template,
                                                       "data": UNIT if data is None else data}
                       | extra)


def _expected_sha(app, name, data, version=None, dpi=203) -> str:
    from web.services.labels import templates as tpl
    with app.app_context():
        zpl = tpl.render(tpl.get_template(name, version), data, tpl.Profile(dpi=dpi))
        from web.extensions import db
        db.session.rollback()
    return hashlib.sha256(zpl).hexdigest()


# --- GET /api/v1/labels/templates -------------------------------------------------------------

def test_templates_lists_the_three_builtins_at_version_1(client, auth):
    resp = client.get(TEMPLATES, headers=auth("operator"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    items = resp.get_json()["items"]
    assert sorted((t["name"], t["version"]) for t in items) == [("box", 1), ("lot", 1),
                                                                ("unit", 1)]
    for t in items:
        assert {v["name"]: v["max_length"] for v in t["variables"]} == BUILTIN_VARS[t["name"]]
        assert t["body"] == BUILTIN[t["name"]]["body"] and "{{lot_no" in t["body"]
        assert t["width_mm"] > 0 and t["height_mm"] > 0 and t["created_at"]
    unit = next(t for t in items if t["name"] == "unit")
    assert "{{serial|code128}}" in unit["body"]
    assert client.get(TEMPLATES, headers=auth("operator")).get_json()["items"] == items


def test_templates_need_a_token(client):
    assert_problem(client.get(TEMPLATES), 401)


# --- POST /api/v1/labels/templates ------------------------------------------------------------

def test_new_version_of_unit_on_a_fresh_database_is_version_2(client, auth, db):
    """The built-in is version 1 whether or not anyone listed the templates before."""
    admin, op = auth("admin"), auth("operator")
    before = label_counts(db)
    resp = client.post(TEMPLATES, headers=admin, json=NEW_UNIT)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["version"] == 2
    items = client.get(TEMPLATES, headers=op).get_json()["items"]
    units = {t["version"]: t for t in items if t["name"] == "unit"}
    assert set(units) == {1, 2}
    assert "{{product_code}}" in units[1]["body"] and units[2]["body"] == NEW_UNIT["body"]
    assert label_counts(db)["audit_events"] == before["audit_events"] + 1


def test_new_version_keeps_the_old_one_usable(client, auth, app, db):
    op = auth("operator")
    assert client.get(TEMPLATES, headers=op).status_code == 200  # built-ins exist
    v1_sha = _expected_sha(app, "unit", UNIT)
    resp = client.post(TEMPLATES, headers=auth("admin"), json=NEW_UNIT)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["name"] == "unit" and body["version"] == 2
    assert body["variables"] == [{"name": "serial", "max_length": 20, "required": True}]
    assert body["body"] == NEW_UNIT["body"] and body["width_mm"] == 60
    audit = db.session.execute(text("select action, entity_id from audit_events "
                                    "where action like 'label_template.%'")).all()
    db.session.rollback()
    assert [tuple(a) for a in audit] == [("label_template.created", "unit:2")]
    listed = [(t["name"], t["version"]) for t in client.get(TEMPLATES, headers=op)
              .get_json()["items"] if t["name"] == "unit"]
    assert listed == [("unit", 1), ("unit", 2)]
    # The newest version is the default; version 1 still renders, byte for byte as before.
    new = _preview(client, op, data={"serial": "SN-77"})
    assert new.status_code == 200, new.get_data(as_text=True)
    assert new.headers["X-Template-Version"] == "2"
    assert barcodes(new.data)["Code128"] == "SN-77"
    old = _preview(client, op, version=1)
    assert old.status_code == 200 and old.headers["X-Template-Version"] == "1"
    assert old.headers["X-ZPL-SHA256"] == v1_sha
    assert barcodes(old.data)["Code128"] == UNIT["serial"]
    # Version 1 still takes its own variables, not version 2's.
    assert_problem(_preview(client, op, version=1, data={"serial": "SN-77"}), 422,
                   "data.product_code")


@pytest.mark.parametrize("body, what", [
    ("^FO0,0^A0N,20,20^FD{{serial}}^FS", "slot in ^FD without ^FH"),
    ("^FO0,0^FH\\^FDA^FS{{serial}}", "slot after the field"),
    ("^FO0,0^FH\\^FD{{serial}}^FS^FO0,40^A0N,20,20^FD{{serial}}^FS", "one slot outside"),
    ("^FO0,0^FH\\^FD{{serial}}^FS\n^FO0,40^FH\\^FD{{colour}}^FS", "undeclared slot"),
    ("^XA^FO0,0^FH\\^FD{{serial}}^FS", "^XA in the body"),
    ("^FO0,0^FH\\^FD{{serial}}^FS^XZ", "^XZ in the body"),
    ("^FO0,0^FH\\^FD{{serial}}^FS^xz^xa^FO0,0^FH\\^FDSECOND^FS", "lower-case ^xz^xa"),
])
def test_bad_template_body_is_422_naming_body(client, auth, db, body, what):
    admin = auth("admin")
    before = label_counts(db)
    resp = client.post(TEMPLATES, headers=admin, json=NEW_UNIT | {"body": body})
    assert_problem(resp, 422, "body")
    assert label_counts(db) == before, what


@pytest.mark.parametrize("over, field", [
    ({"name": "Unit!"}, "name"),
    ({"variables": [{"name": "Serial", "max_length": 20}]}, "variables.0.name"),
    ({"variables": [{"name": "serial", "max_length": 0}]}, "variables.0.max_length"),
    ({"width_mm": 0}, "width_mm"),
    ({"colour": "red"}, "colour"),
])
def test_bad_template_fields_are_422_naming_them(client, auth, db, over, field):
    admin = auth("admin")
    before = label_counts(db)
    assert_problem(client.post(TEMPLATES, headers=admin, json=NEW_UNIT | over), 422, field)
    assert label_counts(db) == before


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_only_admins_add_templates(client, auth, db, role):
    headers = auth(role)
    before = label_counts(db)
    assert_problem(client.post(TEMPLATES, headers=headers, json=NEW_UNIT), 403)
    assert label_counts(db) == before


# --- POST /api/v1/labels/preview --------------------------------------------------------------

def test_unit_preview_is_a_png_of_the_exact_zpl(client, auth, app, db):
    op = auth("operator")
    before = label_counts(db)
    resp = _preview(client, op)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "image/png" and resp.data.startswith(PNG_MAGIC)
    assert HEX64.match(resp.headers["X-ZPL-SHA256"])
    assert resp.headers["X-ZPL-SHA256"] == _expected_sha(app, "unit", UNIT)
    assert resp.headers["X-Template-Version"] == "1"
    assert "X-Preview-Adapted" not in resp.headers
    codes = barcodes(resp.data)
    assert codes["Code128"] == "SN-000123"
    assert codes["DataMatrix"] == "(21)SN-000123(10)LOT-20261126-0007"
    after = label_counts(db)
    assert after["label_jobs"] == before["label_jobs"]  # a preview is not a job
    assert after["audit_events"] == before["audit_events"]


def test_lot_and_box_previews_carry_the_lot_number(client, auth):
    op = auth("operator")
    lot = _preview(client, op, "lot", DATA | {"quantity": 120, "routing": "SMT > FCT > PACK"})
    assert lot.status_code == 200, lot.get_data(as_text=True)
    assert barcodes(lot.data)["Code128"] == DATA["lot_no"]
    box = _preview(client, op, "box", DATA | {"quantity": 120})
    assert box.status_code == 200, box.get_data(as_text=True)
    assert DATA["lot_no"] in barcodes(box.data)["QRCode"]
    assert box.headers["X-ZPL-SHA256"] != lot.headers["X-ZPL-SHA256"]


def test_optional_variable_may_be_left_out(client, auth):
    resp = _preview(client, auth("operator"), "lot", DATA | {"quantity": 5})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def _ink(image: Image.Image) -> Image.Image:
    """Black pixels of a label image as a mode "1" image, cropped to where the ink is."""
    mask = image.convert("L").point(lambda p: 255 if p < 128 else 0).convert("1")
    return mask.crop(mask.getbbox())


def _overlap(a: Image.Image, b: Image.Image) -> float:
    """Intersection over union of the ink of two crops (``b`` scaled to ``a``'s size)."""
    b = b.resize(a.size)
    both = ImageChops.logical_and(a, b).histogram()[255]
    either = ImageChops.logical_or(a, b).histogram()[255]
    return both / either


def test_hangul_product_name_is_drawn_with_the_label_font(client, auth, app):
    name = "뉴로허브 센서"
    data = UNIT | {"product_name": name}
    resp = _preview(client, auth("operator"), data=data)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "X-Preview-Adapted" not in resp.headers  # nothing transliterated: the glyphs exist
    # The hash is of the ZPL that would be sent (UTF-8 via ^CI28), not of the preview copy.
    assert resp.headers["X-ZPL-SHA256"] == _expected_sha(app, "unit", data)
    assert barcodes(resp.data)["Code128"] == "SN-000123"
    # The product line (above the barcode at 5.5 mm) drawn by the preview, against the same text
    # drawn by Pillow with the same TrueType file at the field's height (3 mm = 24 dots).
    with app.app_context():
        from web.services.labels.templates import label_font
        source = label_font().source
    line = _ink(Image.open(io.BytesIO(resp.data)).crop((0, 0, 400, 43)))
    reference = Image.new("L", (800, 100), 255)
    text = f"{UNIT['product_code']} {name}"
    ImageDraw.Draw(reference).text((10, 10), text, font=ImageFont.truetype(source, 24), fill=0)
    reference = _ink(reference)
    assert abs(line.width - reference.width) <= 0.1 * reference.width, (line.size, reference.size)
    assert _overlap(line, reference) > 0.45
    # What the preview drew before (the name as "??") is far from it.
    question = Image.new("L", (800, 100), 255)
    ImageDraw.Draw(question).text((10, 10), f"{UNIT['product_code']} ??", fill=0,
                                  font=ImageFont.truetype(source, 24))
    assert _overlap(line, _ink(question)) < 0.3


def test_too_long_product_name_is_shortened_the_way_a_job_shortens_it(client, auth, app):
    long_name = "제품" * 20 + "-XYZ"  # 44 characters; the field takes 40
    data = UNIT | {"product_name": long_name}
    resp = _preview(client, auth("operator"), data=data)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["X-Label-Shortened"] == "product_name (44 -> 40 characters)"
    from web.services.labels import templates as tpl
    with app.app_context():
        zpl = tpl.render(tpl.get_template("unit"), data, tpl.Profile())
        from web.extensions import db
        db.session.rollback()
    assert resp.headers["X-ZPL-SHA256"] == hashlib.sha256(zpl).hexdigest()
    shown = ("제품" * 20)[:39] + "…"
    assert f"{UNIT['product_code']} {shown}".encode() in _field_text(zpl)
    # Codes are never shortened: a serial or lot number that does not fit is refused.
    assert_problem(_preview(client, auth("operator"), data=UNIT | {"serial": "S" * 33}), 422,
                   "data.serial")


def test_label_font_is_served_to_station_apps(client, auth, app):
    resp = client.get("/api/v1/labels/font", headers=auth("operator"))
    assert resp.status_code == 200 and resp.mimetype == "font/ttf"
    from printers import LabelFont
    font = LabelFont(resp.data)
    assert resp.headers["X-Printer-Path"] == font.path
    assert resp.headers["X-Font-SHA256"] == font.sha256 == hashlib.sha256(resp.data).hexdigest()
    with app.app_context():
        from web.services.labels.templates import label_font
        assert label_font().data == resp.data
    again = client.get("/api/v1/labels/font", headers=auth("operator") | {
        "If-None-Match": f'"{font.sha256}"'})
    assert again.status_code == 304 and again.data == b""
    assert_problem(client.get("/api/v1/labels/font"), 401)


def _field_text(zpl: bytes) -> bytes:
    """The label's field data with ^FH hex escapes decoded (UTF-8 bytes)."""
    return re.sub(rb"\\([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), zpl)


def test_dpi_300_renders_a_bigger_label_than_203(client, auth):
    op = auth("operator")
    small, big = _preview(client, op, dpi=203), _preview(client, op, dpi=300)
    assert small.status_code == big.status_code == 200
    w203, h203 = Image.open(io.BytesIO(small.data)).size
    w300, h300 = Image.open(io.BytesIO(big.data)).size
    assert (w203, h203) == (400, 240)  # 50 x 30 mm
    assert (w300, h300) == (591, 354)
    b203, b300 = code128_box(small.data), code128_box(big.data)
    assert b300[2] - b300[0] > (b203[2] - b203[0]) * 1.3
    assert barcodes(big.data)["Code128"] == "SN-000123"
    assert small.headers["X-ZPL-SHA256"] != big.headers["X-ZPL-SHA256"]


@pytest.mark.parametrize("payload, field", [
    ({"template": "sticker", "data": UNIT}, "template"),
    ({"template": "unit", "data": UNIT, "dpi": 250}, "dpi"),
    ({"template": "unit", "data": UNIT, "version": 0}, "version"),
    ({"template": "unit", "data": {k: v for k, v in UNIT.items() if k != "serial"}},
     "data.serial"),
    ({"template": "unit", "data": UNIT | {"serial": ""}}, "data.serial"),
    ({"template": "unit", "data": UNIT | {"colour": "red"}}, "data.colour"),
    ({"template": "unit", "data": UNIT | {"serial": "S" * 33}}, "data.serial"),
    ({"template": "box", "data": DATA | {"quantity": 12345678}}, "data.quantity"),
    ({"template": "unit", "data": UNIT | {"serial": "SN-é01"}}, "data.serial"),
    ({"template": "unit", "data": UNIT | {"serial": "SN-일련"}}, "data.serial"),
    ({"template": "unit", "data": UNIT | {"serial": "SN\t01"}}, "data.serial"),
    ({"template": "unit", "data": UNIT | {"serial": ["SN-1"]}}, "data.serial"),
    ({"template": "unit"}, "data"),
])
def test_bad_preview_is_422_naming_the_field(client, auth, db, payload, field):
    op = auth("operator")
    before = label_counts(db)
    assert_problem(client.post(PREVIEW, headers=op, json=payload), 422, field)
    assert label_counts(db)["label_jobs"] == before["label_jobs"]
    assert label_counts(db)["audit_events"] == before["audit_events"]


def test_unknown_template_version_is_422(client, auth):
    body = assert_problem(_preview(client, auth("operator"), version=99), 422)
    assert body["errors"] and "99" in body["detail"]
    assert_problem(_preview(client, auth("operator"), "sticker", version=1), 422, "template")


def test_preview_needs_a_token(client):
    assert_problem(client.post(PREVIEW, json={"template": "unit", "data": UNIT}), 401)
