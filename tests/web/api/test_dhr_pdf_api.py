"""GET /api/v1/lots/{lot_no}/dhr?format=pdf: the device history record as a PDF, Korean included."""
from __future__ import annotations

import shutil
import subprocess

from tests.support.factories import FCT_ROUTING, SYSTEM

from .test_lots_api import URL, _complete

KOREAN_NAME = "혈당 측정기 본체"


def _text(pdf_path) -> str:
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (poppler-utils, deploy/apt-packages.txt) is required"
    return subprocess.run([pdftotext, "-enc", "UTF-8", str(pdf_path), "-"], capture_output=True,
                          text=True, check=True, timeout=30).stdout


def test_dhr_pdf_has_the_korean_name_the_measurements_and_the_audit(app, client, auth, factory,
                                                                   tmp_path):
    from web.services import products
    with app.app_context():
        products.create_product("GLU-1", KOREAN_NAME, FCT_ROUTING, SYSTEM)
    headers = auth("operator")
    station = factory.station(steps=["SMT", "FCT"])
    lot = factory.lot("GLU-1", quantity=2)
    _complete(app, client, headers, lot, "SMT", station)
    _complete(app, client, headers, lot, "FCT", station, {"voltage": 3.31, "current_ma": 42})
    resp = client.get(f"{URL}/{lot}/dhr", headers=headers, query_string={"format": "pdf"})
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{lot}-dhr.pdf"'
    assert resp.data.startswith(b"%PDF")
    pdf = tmp_path / "dhr.pdf"
    pdf.write_bytes(resp.data)
    text = _text(pdf)
    assert KOREAN_NAME in text and lot in text
    assert "voltage" in text and "3.31" in text
    assert "lot.created" in text and "completion.accepted" in text  # the audit trail


def test_dhr_pdf_is_declared_in_the_document(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/api/v1/lots/{lot_no}/dhr"]["get"]
    assert op["responses"]["200"]["content"]["application/pdf"]["schema"] == {
        "type": "string", "format": "binary"}
    (fmt,) = [p for p in op["parameters"] if p["name"] == "format"]
    assert "pdf" in str(fmt["schema"]), fmt
