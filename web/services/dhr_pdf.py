"""The device history record as a PDF (fpdf2), with an embedded font that has Hangul.

The font is the one the labels use (printers' bundled NanumSquare, SIL OFL), embedded as a
subset, so a Korean product name or reason renders on any PC, with no system font needed.
"""
from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from printers.fonts import BUNDLED_FONT

from .plant_time import plant_zone, shown

FONT = "nanum"
_NEXT_LINE = {"new_x": XPos.LMARGIN, "new_y": YPos.NEXT}


def _pdf() -> FPDF:
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_font(FONT, fname=BUNDLED_FONT)
    pdf.set_font(FONT, size=9)
    pdf.add_page()
    return pdf


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font(FONT, size=12)
    pdf.cell(0, 7, text, **_NEXT_LINE)
    pdf.set_font(FONT, size=8)


def _table(pdf: FPDF, header: list[str], rows: list[list], widths: list[int]) -> None:
    """A simple ruled table; long cells wrap within their column."""
    # Headings shaded, not bold: the one embedded font has no bold face.
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.5,
                   first_row_as_headings=True,
                   headings_style=FontFace(emphasis="", fill_color=(230, 233, 238))) as table:
        for values in [header] + rows:
            row = table.row()
            for v in values:
                row.cell("" if v is None else str(v))


def _measurements(c: dict) -> str:
    parts = []
    for m in c.get("measurements") or []:
        limits = f"[{m.get('min')}..{m.get('max')}]"
        verdict = "ok" if m.get("pass") else "FAIL"
        parts.append(f"{m['name']}={m.get('value')} {m.get('unit') or ''} {limits} {verdict}")
    return "; ".join(parts)


def to_pdf(record: dict, product_name: str = "") -> bytes:
    """The DHR of one lot (as dhr.build gives it) rendered to PDF bytes."""
    lot, zone = record["lot"], plant_zone()
    pdf = _pdf()
    pdf.set_font(FONT, size=16)
    pdf.cell(0, 9, f"Device History Record - {lot['lot_no']}", **_NEXT_LINE)
    pdf.set_font(FONT, size=9)
    for line in (f"Product: {lot['product']} {product_name}".rstrip(),
                 f"Status: {lot['status']}   Step: {lot['current_step'] or '-'}   "
                 f"Quantity: {lot['quantity']} (good {lot['qty_good']})   "
                 f"Routing revision: {lot['routing_revision']}",
                 f"Hold reason: {lot['hold_reason']}" if lot["hold_reason"] else "",
                 f"Serials: {', '.join(lot['serials'][:50])}" if lot["serials"] else "",
                 f"Generated: {shown(record['generated_at'], zone=zone)}"):
        if line:
            pdf.multi_cell(0, 5, line, **_NEXT_LINE)
    _heading(pdf, "Completions")
    rows = []
    for step in record["steps"]:
        for c in step["completions"]:
            fw = c.get("firmware") or {}
            rows.append([step["step"], c["id"], c["status"], c["unit_serial"], c["station"],
                         c["operator"], shown(c["received_at"], zone=zone), _measurements(c),
                         ";".join(r["code"] for r in c["reasons"]),
                         f"{fw.get('version', c['firmware_version'] or '')} "
                         f"{(fw.get('sha256') or c['firmware_sha256'] or '')[:16]}".strip()])
    _table(pdf, ["Step", "Id", "Status", "Serial", "Station", "Operator", "Received",
                 "Measurements", "Reasons", "Firmware"], rows,
           [14, 14, 16, 22, 16, 20, 34, 80, 30, 30])
    _heading(pdf, "Labels")
    _table(pdf, ["Id", "State", "Template", "Printer", "Reason", "Reprint of", "Created"],
           [[j["id"], j["state"], f"{j['template']} v{j['template_version']}", j["printer"],
             j["reprint_reason"] or j["reason"], j["reprint_of"],
             shown(j["created_at"], zone=zone)] for j in record["labels"]],
           [16, 20, 40, 60, 70, 20, 50])
    _heading(pdf, "Audit trail")
    _table(pdf, ["When", "Actor", "Action", "After"],
           [[shown(a["at"], zone=zone), a["actor"], a["action"],
             "" if a["after"] is None else str(a["after"])[:300]] for a in record["audit"]],
           [40, 35, 35, 166])
    return bytes(pdf.output())
