"""Versioned ZPL label templates and rendering them for a printer's profile.

A template body is ZPL without ``^XA``/``^XZ`` in which ``[[12.5]]`` is a length in millimetres
(converted to dots for the printer's dpi) and ``{{name}}`` / ``{{name|code128}}`` /
``{{name|datamatrix}}`` is a data slot. A slot may only stand inside a ``^FH\\^FD ... ^FS``
field, and its value is always hex-escaped there (``printers.field_hex``), so ``^`` and ``~`` in
data can never become printer commands. Versions are immutable: a changed body is a new version,
and label jobs keep the version they were rendered with.

Text: every label is UTF-8 (``^CI28``) and maps font ``K`` to the label font (``LABEL_FONT``, a
TrueType font with Hangul that printing downloads to each printer once, printers.fonts); the
built-in templates print their text in it (``^AK``), so Korean product names print and preview.
A value longer than its variable's ``max_length`` is refused, or, for a variable declared with
``"overflow": "shorten"`` (text for people, like the product name), shortened to fit with "…":
the same rule for previews and for the jobs the worker makes.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from printers import field_hex
from printers.fonts import FONT_LETTER, LabelFont, load_font

from ...extensions import db
from ...models import LabelTemplate
from ...problems import FieldError
from ..audit import Actor, record

SLOT = re.compile(r"\{\{([a-z_][a-z0-9_]*)(?:\|(code128|datamatrix))?\}\}")
MM = re.compile(r"\[\[(\d+(?:\.\d+)?)\]\]")
FIELD = re.compile(r"\^FH\\\^FD(.*?)\^FS", re.S)
DPIS = (203, 300, 600)


class TemplateError(FieldError, ValueError):
    """A template body or the data for it is not acceptable; ``field`` names the culprit."""

    def __init__(self, message: str, field: str = "data"):
        super().__init__(field, message)


class TemplateNotFound(FieldError, LookupError):
    """No template with this name (and version): the request's ``template`` is refused."""

    def __init__(self, message: str):
        super().__init__("template", message)


@dataclass(frozen=True)
class Profile:
    """What a printer needs to know to lay a label out."""

    dpi: int = 203
    width_dots: int | None = None
    length_dots: int | None = None
    darkness: int | None = None


_V = lambda name, n, required=True: {"name": name, "max_length": n, "required": required}  # noqa
_SHORTEN = {"overflow": "shorten"}
_COMMON = [_V("product_code", 32), dict(_V("product_name", 40), **_SHORTEN), _V("lot_no", 32),
           _V("date", 10)]
ELLIPSIS = "\u2026"

BUILTIN = {
    "unit": dict(width_mm=50, height_mm=30, description="unit label: serial Code 128 + GS1-style "
                 "Data Matrix", variables=_COMMON + [_V("serial", 32)], body="""
^FO[[2]],[[1.5]]^AKN,[[3]],[[3]]^FH\\^FD{{product_code}} {{product_name}}^FS
^FO[[2]],[[5.5]]^BY[[0.25]]^BCN,[[9]],Y,N,N^FH\\^FD{{serial|code128}}^FS
^FO[[2]],[[21]]^AKN,[[2.6]],[[2.6]]^FH\\^FDLOT {{lot_no}}^FS
^FO[[2]],[[25]]^AKN,[[2.6]],[[2.6]]^FH\\^FD{{date}}^FS
^FO[[35]],[[15]]^BXN,[[0.5]],200,,,,~^FH\\^FD(21){{serial|datamatrix}}(10){{lot_no|datamatrix}}^FS
"""),
    "lot": dict(width_mm=100, height_mm=60, description="lot traveler: lot Code 128, product, "
                "quantity, routing", variables=_COMMON + [
                    _V("quantity", 7), dict(_V("routing", 120, False), **_SHORTEN)], body="""
^FO[[4]],[[3]]^A0N,[[5]],[[5]]^FH\\^FDLOT TRAVELER^FS
^FO[[4]],[[10]]^BY[[0.375]]^BCN,[[14]],Y,N,N^FH\\^FD{{lot_no|code128}}^FS
^FO[[4]],[[32]]^AKN,[[4]],[[4]]^FH\\^FD{{product_code}} {{product_name}}^FS
^FO[[4]],[[38]]^AKN,[[4]],[[4]]^FH\\^FDQTY {{quantity}}   {{date}}^FS
^FO[[4]],[[45]]^FB[[92]],3,0,L^AKN,[[3]],[[3]]^FH\\^FD{{routing}}^FS
"""),
    "box": dict(width_mm=100, height_mm=75, description="packing label: product, lot, quantity, "
                "QR", variables=_COMMON + [_V("quantity", 7)], body="""
^FO[[4]],[[4]]^A0N,[[6]],[[6]]^FH\\^FD{{product_code}}^FS
^FO[[4]],[[12]]^AKN,[[4]],[[4]]^FH\\^FD{{product_name}}^FS
^FO[[4]],[[20]]^AKN,[[4]],[[4]]^FH\\^FDLOT {{lot_no}}^FS
^FO[[4]],[[27]]^AKN,[[4]],[[4]]^FH\\^FDQTY {{quantity}}^FS
^FO[[4]],[[34]]^AKN,[[4]],[[4]]^FH\\^FD{{date}}^FS
^FO[[60]],[[25]]^BQN,2,[[0.35]]^FH\\^FDQA,{{lot_no}};{{product_code}};{{quantity}}^FS
"""),
}


def check_body(body: str, variables: list[dict]) -> None:
    """Refuse a body whose slots are unknown or stand outside an ``^FH\\^FD`` field."""
    declared = {v["name"] for v in variables}
    inside = sum(len(SLOT.findall(f)) for f in FIELD.findall(body))
    slots = SLOT.findall(body)
    if inside != len(slots):
        raise TemplateError("every {{slot}} must stand inside a ^FH\\^FD ... ^FS field", "body")
    unknown = sorted({name for name, _ in slots} - declared)
    if unknown:
        raise TemplateError(f"slots without a declared variable: {', '.join(unknown)}", "body")
    if re.search(r"\^X[AZ]", body, re.I):  # printers read commands case-insensitively
        raise TemplateError("the body must not contain ^XA or ^XZ (added when rendering)", "body")
    if re.search(r"~[A-Za-z]{2}", SLOT.sub("", body)):  # ~ commands act at once (~JR resets)
        raise TemplateError("control commands (~...) are not allowed in a label template", "body")


def dots(mm: float, dpi: int) -> int:
    """Millimetres to printer dots."""
    return round(mm * dpi / 25.4)


def validate_data(template: LabelTemplate, data: dict) -> dict[str, str]:
    """The data as strings, or TemplateError naming the missing/unknown/too long variable."""
    spec = {v["name"]: v for v in template.variables}
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise TemplateError(f"unknown variable {unknown[0]!r} for template {template.name}",
                            f"data.{unknown[0]}")
    out = {}
    for name, v in spec.items():
        value = data.get(name)
        if value is None or value == "":
            if v.get("required", True):
                raise TemplateError(f"missing variable {name!r} for template {template.name}",
                                    f"data.{name}")
            value = ""
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise TemplateError(f"{name} must be text or an integer", f"data.{name}")
        value = str(value)
        if len(value) > v["max_length"]:
            if v.get("overflow") != "shorten":
                raise TemplateError(f"{name} is {len(value)} characters; the field takes at "
                                    f"most {v['max_length']}", f"data.{name}")
            value = value[:v["max_length"] - 1] + ELLIPSIS
        out[name] = value
    return out


def shortened(template: LabelTemplate, data: dict) -> list[str]:
    """What ``validate_data`` shortens to fit: ``"name (57 -> 40 characters)"`` per variable."""
    return [f"{v['name']} ({len(str(data[v['name']]))} -> {v['max_length']} characters)"
            for v in template.variables
            if v.get("overflow") == "shorten" and isinstance(data.get(v["name"]), (str, int))
            and len(str(data[v["name"]])) > v["max_length"]]


@functools.lru_cache(maxsize=4)
def _font(path: str) -> LabelFont:
    return load_font(path)


def label_font() -> LabelFont:
    """The label font (``LABEL_FONT``, resolved and checked at start-up), read once a process."""
    return _font(current_app.config["LABEL_FONT"])


def render(template: LabelTemplate, data: dict, profile: Profile = Profile(),
           copies: int = 1, font: LabelFont | None = None) -> bytes:
    """The complete ZPL of one label for this printer profile (ASCII bytes)."""
    if profile.dpi not in DPIS:
        raise TemplateError(f"dpi must be one of {DPIS}", "dpi")
    values = validate_data(template, data)

    def slot(m: re.Match) -> str:
        try:
            return field_hex(values[m.group(1)], barcode=m.group(2))
        except ValueError as exc:  # e.g. non-ASCII in a Code 128 field
            raise TemplateError(f"{m.group(1)}: {exc}", f"data.{m.group(1)}") from None

    body = SLOT.sub(slot, template.body)
    body = MM.sub(lambda m: str(max(dots(float(m.group(1)), profile.dpi), 1)), body)
    width = profile.width_dots or dots(template.width_mm, profile.dpi)
    length = profile.length_dots or dots(template.height_mm, profile.dpi)
    font = font or label_font()
    head = f"^XA\n^CI28\n{font.assign_command(FONT_LETTER)}\n^PW{width}\n^LL{length}\n^LH0,0\n"
    if profile.darkness is not None:
        head += f"^MD{profile.darkness}\n"
    tail = f"^PQ{copies},0,1,Y\n" if copies > 1 else ""
    # Ends exactly at ^XZ: what the printer stores is byte for byte what the sha256 covers.
    return (head + body.strip() + "\n" + tail + "^XZ").encode("ascii")


def sha256(zpl: bytes) -> str:
    """The fingerprint kept with every job: proof of exactly what was sent."""
    return hashlib.sha256(zpl).hexdigest()


def sync_builtin_templates() -> None:
    """Make sure the built-ins exist; a changed built-in body becomes a new version."""
    for name, spec in BUILTIN.items():
        latest = latest_template(name, sync=False)
        if latest is not None and latest.body == spec["body"] and \
                latest.variables == spec["variables"]:
            continue
        db.session.add(LabelTemplate(name=name, version=(latest.version + 1) if latest else 1,
                                     body=spec["body"], variables=spec["variables"],
                                     width_mm=spec["width_mm"], height_mm=spec["height_mm"],
                                     description=spec["description"], created_by="system"))
        db.session.flush()


def latest_template(name: str, sync: bool = True) -> LabelTemplate | None:
    """The newest version of a template (built-ins are created on first use)."""
    stmt = select(LabelTemplate).where(LabelTemplate.name == name).order_by(
        LabelTemplate.version.desc()).limit(1)
    tpl = db.session.scalar(stmt)
    if tpl is None and sync and name in BUILTIN:
        sync_builtin_templates()
        tpl = db.session.scalar(stmt)
    return tpl


def get_template(name: str, version: int | None = None) -> LabelTemplate:
    """A template version (the newest when ``version`` is None)."""
    if version is None:
        tpl = latest_template(name)
    else:
        if latest_template(name) is None:
            tpl = None
        else:
            tpl = db.session.scalar(select(LabelTemplate).where(
                LabelTemplate.name == name, LabelTemplate.version == version))
    if tpl is None:
        raise TemplateNotFound(f"no label template {name!r}"
                               + (f" version {version}" if version else ""))
    return tpl


# What the worker can fill in for a label (web.services.labels.label_data).
SUPPLIED = {"product_code", "product_name", "lot_no", "date", "serial", "quantity", "routing"}


def add_version(name: str, body: str, variables: list[dict], width_mm: float, height_mm: float,
                description: str | None, actor: Actor) -> LabelTemplate:
    """Add a new version of a template (admin); audited."""
    check_body(body, variables)
    missing = sorted(v["name"] for v in variables
                     if v.get("required", True) and v["name"] not in SUPPLIED)
    if missing:  # the worker could never fill them: every completion at that step would fail
        raise TemplateError(f"required variables no completion can supply: {', '.join(missing)}"
                            f" (available: {', '.join(sorted(SUPPLIED))})", "variables")
    latest_template(name)  # a built-in is version 1 before any admin version
    current = db.session.scalar(select(func.max(LabelTemplate.version)).where(
        LabelTemplate.name == name)) or 0
    tpl = LabelTemplate(name=name, version=current + 1, body=body, variables=variables,
                        width_mm=width_mm, height_mm=height_mm, description=description,
                        created_by=actor.name)
    db.session.add(tpl)
    db.session.flush()
    record(actor, "label_template.created", "label_template", f"{name}:{tpl.version}",
           after={"name": name, "version": tpl.version})
    db.session.commit()
    return tpl


def list_templates() -> list[LabelTemplate]:
    """Every version of every template (built-ins created on first use)."""
    for name in BUILTIN:
        latest_template(name)
    db.session.commit()
    return list(db.session.scalars(select(LabelTemplate).order_by(LabelTemplate.name,
                                                                  LabelTemplate.version)))


def template_dict(t: LabelTemplate) -> dict:
    """A template version as the API shows it."""
    return {"name": t.name, "version": t.version, "variables": t.variables,
            "width_mm": t.width_mm, "height_mm": t.height_mm, "description": t.description,
            "body": t.body, "created_at": t.created_at.isoformat()}
