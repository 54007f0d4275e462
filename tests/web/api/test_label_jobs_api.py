"""Label jobs end to end: accepted completions -> jobs -> a real TCP printer simulator, job
lists and previews, reprints, the station pull API, printer profiles and the DHR's labels."""
from __future__ import annotations

import hashlib
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from printers import PrinterSimulator
from tests.support.procs import free_port
from web.services.labels.templates import label_font

from .api_helpers import assert_problem
from .test_labels_api import (NEW_UNIT, PNG_MAGIC, TEMPLATES, barcodes, label_counts,
                              reset_label_tables)

JOBS = "/api/v1/labels/jobs"
ROUTING = [{"step": "MARK", "name": "Unit marking", "label_template": "unit"},
           {"step": "PACK", "name": "Packing", "label_template": "box"}]
EVIL = "X^XZ^XA^FO0,0^FDPWN^FS~JR"


@pytest.fixture(autouse=True)
def _clean_label_tables(db):
    reset_label_tables(db)


@pytest.fixture()
def sim(request):
    """A real Zebra-like TCP printer on a free port, stopped when the test ends."""
    simulator = PrinterSimulator(port=free_port(), control_port=None, render=False).start()
    request.addfinalizer(simulator.stop)
    return simulator


def _serials(n: int) -> list[str]:
    return [f"SN-{uuid.uuid4().hex[:10].upper()}" for _ in range(n)]


@pytest.fixture()
def line(factory, auth, sim):
    """Product MARK(unit) -> PACK(box), a station printing to the simulator, a lot of 3 units."""
    product = factory.product(routing=ROUTING)
    uri = f"tcp://127.0.0.1:{sim.port}"
    station = factory.station(steps=["MARK", "PACK"], printer_uri=uri)
    serials = _serials(3)
    lot = factory.lot(product, 3, serials=serials)
    return SimpleNamespace(product=product, uri=uri, station=station, serials=serials, lot=lot,
                           op=auth("operator"), sup=auth("supervisor"), sim=sim)


def complete(app, client, headers, lot_no, step, station, **extra) -> int:
    """POST an accepted completion and decide it in-process (creates its label jobs)."""
    resp = client.post("/api/v1/completions", headers=headers | {
        "Idempotency-Key": uuid.uuid4().hex}, json={"lot_no": lot_no, "step": step,
                                                    "station": station, "measurements": {}}
                       | extra)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    from web.services.completions.processing import process_completion
    with app.app_context():
        assert process_completion(resp.get_json()["id"]) == "accepted"
    return resp.get_json()["id"]


def print_jobs(app, ids) -> list[str]:
    """Run the print task body for each job, in id order; returns the states."""
    from web.services.labels.delivery import print_job
    with app.app_context():
        return [print_job(i) for i in sorted(ids)]


def jobs(client, headers, **params) -> dict:
    resp = client.get(JOBS, headers=headers, query_string=params)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def job(client, headers, job_id) -> dict:
    resp = client.get(f"{JOBS}/{job_id}", headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def print_messages(db) -> int:
    n = db.session.execute(text("select count(*) from outbox_messages "
                                "where dedup_key like 'label:%'")).scalar_one()
    db.session.rollback()
    return n


@pytest.fixture()
def marked(app, client, line):
    """The lot completed at MARK: three queued unit label jobs (oldest first)."""
    line.cid = complete(app, client, line.op, line.lot, "MARK", line.station)
    line.jobs = sorted(jobs(client, line.op, lot_no=line.lot)["items"], key=lambda j: j["id"])
    return line


# --- end to end through the simulator ---------------------------------------------------------

def test_lot_completion_prints_one_unit_label_per_serial(app, client, db, marked):
    m = marked
    assert [j["unit_serial"] for j in m.jobs] == m.serials
    for j in m.jobs:
        assert (j["state"], j["template"], j["template_version"], j["printer"], j["reason"],
                j["completion_id"], j["reprint_of"], j["attempts"]) == \
            ("queued", "unit", 1, m.uri, "first_print", m.cid, None, 0)
        assert j["data"]["lot_no"] == m.lot and j["data"]["serial"] == j["unit_serial"]
        assert "zpl" not in j  # lists stay small; the detail has the ZPL
    assert print_messages(db) == 3 and m.sim.label_count == 0
    assert print_jobs(app, [j["id"] for j in m.jobs]) == ["printed"] * 3
    assert print_messages(db) == 0
    printed = [job(client, m.op, j["id"]) for j in m.jobs]
    labels = m.sim.labels()
    assert len(labels) == m.sim.label_count == 3
    for j, label in zip(printed, labels):
        assert j["state"] == "printed" and j["attempts"] == 1 and j["printed_at"]
        assert hashlib.sha256(j["zpl"].encode("ascii")).hexdigest() == j["zpl_sha256"]
        assert j["unit_serial"].encode() in label.zpl
        assert label.zpl.strip() == j["zpl"].encode("ascii").strip()
        # The printer holds exactly the job's ZPL, so its hash proves what was printed.
        assert label.zpl == j["zpl"].encode("ascii")
        assert hashlib.sha256(label.zpl).hexdigest() == j["zpl_sha256"]


def test_a_printed_job_is_never_printed_again(app, client, marked):
    ids = [j["id"] for j in marked.jobs]
    print_jobs(app, ids)
    assert print_jobs(app, ids) == ["printed"] * 3  # redelivered messages: no effect
    assert marked.sim.label_count == 3


def test_completion_lists_its_labels_with_states(app, client, marked):
    url = f"/api/v1/completions/{marked.cid}"
    before = client.get(url, headers=marked.op).get_json()["labels"]
    assert [(lb["id"], lb["state"], lb["unit_serial"], lb["template"]) for lb in before] == \
        [(j["id"], "queued", s, "unit") for j, s in zip(marked.jobs, marked.serials)]
    print_jobs(app, [j["id"] for j in marked.jobs])
    after = client.get(url, headers=marked.op).get_json()["labels"]
    assert [lb["state"] for lb in after] == ["printed"] * 3


def test_job_detail_and_preview_of_the_exact_zpl(client, marked):
    first = marked.jobs[0]
    detail = job(client, marked.op, first["id"])
    assert detail["zpl"].startswith("^XA\n^CI28\n") and "^FH\\^FD" in detail["zpl"]
    assert {k: v for k, v in detail.items() if k != "zpl"} == first
    resp = client.get(f"{JOBS}/{first['id']}/preview.png", headers=marked.op)
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert resp.data.startswith(PNG_MAGIC)
    assert barcodes(resp.data)["Code128"] == first["unit_serial"]


@pytest.mark.parametrize("path", ["", "/preview.png"])
def test_unknown_job_is_404(client, auth, db, path):
    assert_problem(client.get(f"{JOBS}/987654321{path}", headers=auth("operator")), 404)


def test_job_filters_and_cursor_pagination(app, client, factory, marked):
    m = marked
    print_jobs(app, [m.jobs[-1]["id"]])  # delivers every pending job of the printer
    other = factory.lot(m.product, 3, serials=_serials(3))
    complete(app, client, m.op, other, "MARK", m.station)  # queued after that delivery
    mine = {j["id"] for j in m.jobs}
    theirs = {j["id"] for j in jobs(client, m.op, lot_no=other)["items"]}
    assert len(theirs) == 3 and not mine & theirs
    assert {j["id"] for j in jobs(client, m.op, state="printed")["items"]} == mine
    assert {j["id"] for j in jobs(client, m.op, state="queued")["items"]} == theirs
    assert jobs(client, m.op, state="failed")["items"] == []
    assert {j["id"] for j in jobs(client, m.op, printer=m.uri)["items"]} == mine | theirs
    assert jobs(client, m.op, printer="tcp://127.0.0.1:1")["items"] == []
    assert {j["id"] for j in jobs(client, m.op, lot_no=m.lot, state="queued")["items"]} == set()
    seen, cursor, pages = [], None, 0
    while True:
        page = jobs(client, m.op, limit=4, **({"cursor": cursor} if cursor else {}))
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2 and seen == sorted(mine | theirs, reverse=True)


@pytest.mark.parametrize("params, field", [({"state": "lost"}, "query.state"),
                                           ({"limit": 0}, "query.limit"),
                                           ({"cursor": "nope"}, "query.cursor"),
                                           ({"lot_no": "LOT 1"}, "query.lot_no")])
def test_bad_job_query_is_400_naming_it(client, auth, params, field):
    assert_problem(client.get(JOBS, headers=auth("operator"), query_string=params), 400, field)


def test_jobs_use_the_newest_template_version(app, client, auth, line):
    """A version the API accepted (it declares only `serial`) is what the next job renders."""
    assert client.get(TEMPLATES, headers=line.op).status_code == 200  # built-ins are v1
    resp = client.post(TEMPLATES, headers=auth("admin"), json=NEW_UNIT)
    assert resp.status_code == 201 and resp.get_json()["version"] == 2
    cid = complete(app, client, line.op, line.lot, "MARK", line.station, qty_good=1,
                   unit_serial=line.serials[0])
    (only,) = jobs(client, line.op, lot_no=line.lot)["items"]
    assert (only["completion_id"], only["template_version"]) == (cid, 2)
    png = client.get(f"{JOBS}/{only['id']}/preview.png", headers=line.op).data
    assert barcodes(png)["Code128"] == line.serials[0]


# --- injection through label data -------------------------------------------------------------

def test_product_name_cannot_inject_printer_commands(app, client, auth, sim):
    admin, op = auth("admin"), auth("operator")
    resp = client.post("/api/v1/products", headers=admin, json={
        "code": "EVIL-1", "name": EVIL, "routing": [ROUTING[0]]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    uri = f"tcp://127.0.0.1:{sim.port}"
    assert client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-EVIL", "name": "Evil", "steps": ["MARK"], "printer_uri": uri}).status_code \
        == 201
    lot = client.post("/api/v1/lots", headers=auth("supervisor"), json={
        "product": "EVIL-1", "quantity": 1, "serials": _serials(1)}).get_json()["lot_no"]
    complete(app, client, op, lot, "MARK", "ST-EVIL")
    (only,) = jobs(client, op, lot_no=lot)["items"]
    assert only["data"]["product_name"] == EVIL
    assert print_jobs(app, [only["id"]]) == ["printed"]
    assert sim.label_count == 1  # one label: the data did not close it and open another
    (label,) = sim.labels()
    assert label.zpl.count(b"^XA") == 1 and label.zpl.count(b"^XZ") == 1
    assert b"^XZ^XA" not in label.zpl and b"~JR" not in label.zpl and b"PWN^FS" not in label.zpl
    assert b"X\\5EXZ\\5EXA\\5EFO0,0\\5EFDPWN\\5EFS\\7EJR" in label.zpl
    assert "JR" not in sim.state.control_commands  # ~HS only: the printer was not reset
    # ...and the label font's ~DY, sent by the server before the first label, once.
    assert set(sim.state.control_commands) == {"HS", "DY"}
    assert list(sim.state.control_commands).count("DY") == 1
    with app.app_context():
        assert sim.state.downloads == {label_font().path: 1}
    assert client.get(f"{JOBS}/{only['id']}/preview.png", headers=op).status_code == 200


def test_long_korean_product_name_follows_the_preview_rule_in_a_job(app, client, auth, sim):
    admin, op = auth("admin"), auth("operator")
    name = "신경 자극기 " * 7 + "모델"  # 51 characters; the unit label's field takes 40
    assert client.post("/api/v1/products", headers=admin, json={
        "code": "KR-1", "name": name, "routing": [ROUTING[0]]}).status_code == 201
    uri = f"tcp://127.0.0.1:{sim.port}"
    assert client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-KR", "name": "Korean", "steps": ["MARK"], "printer_uri": uri}).status_code \
        == 201
    lot = client.post("/api/v1/lots", headers=auth("supervisor"), json={
        "product": "KR-1", "quantity": 1, "serials": _serials(1)}).get_json()["lot_no"]
    complete(app, client, op, lot, "MARK", "ST-KR")
    (only,) = jobs(client, op, lot_no=lot)["items"]
    assert only["data"]["product_name"] == name  # the record keeps the whole name
    preview = client.post("/api/v1/labels/preview", headers=op, json={
        "template": "unit", "data": only["data"]})
    assert preview.status_code == 200, preview.get_data(as_text=True)  # not 422
    assert preview.headers["X-Label-Shortened"] == "product_name (51 -> 40 characters)"
    assert preview.headers["X-ZPL-SHA256"] == only["zpl_sha256"]  # the very label printed
    assert print_jobs(app, [only["id"]]) == ["printed"]
    (label,) = sim.labels()
    assert hashlib.sha256(label.zpl).hexdigest() == only["zpl_sha256"]
    with app.app_context():
        from web.extensions import db
        from web.models import AuditEvent
        queued = db.session.query(AuditEvent).filter_by(action="label.queued",
                                                        entity_id=str(only["id"])).one()
        assert queued.after["shortened"] == ["product_name (51 -> 40 characters)"]
        db.session.rollback()


def test_a_name_the_template_refuses_is_not_printed_cut_but_skipped_and_said(app, client, auth,
                                                                             sim):
    admin, op = auth("admin"), auth("operator")
    strict = NEW_UNIT | {"variables": [{"name": "product_name", "max_length": 40},
                                       {"name": "serial", "max_length": 20}],
                         "body": NEW_UNIT["body"] + "\n^FO[[2]],[[18]]^AKN,[[3]],[[3]]"
                                                    "^FH\\^FD{{product_name}}^FS"}
    assert client.post(TEMPLATES, headers=admin, json=strict).status_code == 201
    name = "신경 자극기 " * 7 + "모델"  # 51 characters; this version takes 40 and no more
    assert client.post("/api/v1/products", headers=admin, json={
        "code": "KR-2", "name": name, "routing": [ROUTING[0]]}).status_code == 201
    assert client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-KR2", "name": "Korean", "steps": ["MARK"],
        "printer_uri": f"tcp://127.0.0.1:{sim.port}"}).status_code == 201
    lot = client.post("/api/v1/lots", headers=auth("supervisor"), json={
        "product": "KR-2", "quantity": 1, "serials": _serials(1)}).get_json()["lot_no"]
    preview = client.post("/api/v1/labels/preview", headers=op, json={
        "template": "unit", "data": {"product_name": name, "serial": "SN-1"}})
    assert_problem(preview, 422, "data.product_name")
    cid = complete(app, client, op, lot, "MARK", "ST-KR2")  # the completion still counts
    assert jobs(client, op, lot_no=lot)["items"] == []  # no label with a cut name
    with app.app_context():
        from web.extensions import db
        from web.models import AuditEvent
        skipped = db.session.query(AuditEvent).filter_by(action="label.skipped",
                                                         entity_id=str(cid)).one()
        assert skipped.after["reason"] == ("data.product_name: product_name is 51 characters; "
                                           "the field takes at most 40")
        db.session.rollback()


# --- reprint ----------------------------------------------------------------------------------

def test_reprint_is_a_new_job_linked_to_the_original(app, client, auth, factory, marked):
    m = marked
    first = m.jobs[0]
    print_jobs(app, [j["id"] for j in m.jobs])
    original = job(client, m.op, first["id"])
    # A newer template version exists by now; a reprint keeps the version it was made with.
    assert client.post(TEMPLATES, headers=auth("admin"), json=NEW_UNIT).status_code == 201
    resp = client.post(f"{JOBS}/{first['id']}/reprint", headers=m.sup,
                       json={"reason": "label smudged"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    new = resp.get_json()
    assert new["id"] not in {j["id"] for j in m.jobs}
    assert (new["reprint_of"], new["reason"], new["reprint_reason"], new["state"]) == \
        (first["id"], "reprint", "label smudged", "queued")
    assert (new["template"], new["template_version"], new["zpl_sha256"], new["zpl"]) == \
        ("unit", 1, original["zpl_sha256"], original["zpl"])
    assert (new["unit_serial"], new["completion_id"], new["printer"]) == \
        (first["unit_serial"], m.cid, m.uri)
    assert job(client, m.op, first["id"]) == original  # the original is untouched
    audit = client.get(f"/api/v1/lots/{m.lot}/dhr", headers=m.op).get_json()["audit"]
    (event,) = [a for a in audit if a["action"] == "label.reprint"]
    assert event["entity_id"] == str(new["id"]) and event["actor"].startswith("supervisor")
    assert event["after"]["reason"] == "label smudged"
    assert print_jobs(app, [new["id"]]) == ["printed"]
    assert m.sim.label_count == 4 and m.sim.labels()[-1].zpl == m.sim.labels()[0].zpl


def test_reprint_refusals_change_nothing(client, auth, db, marked):
    m = marked
    url = f"{JOBS}/{m.jobs[0]['id']}/reprint"
    original = job(client, m.op, m.jobs[0]["id"])
    before = label_counts(db)
    assert_problem(client.post(url, headers=m.op, json={"reason": "again"}), 403)
    assert_problem(client.post(url, headers=m.sup, json={}), 422, "reason")
    assert_problem(client.post(url, headers=m.sup, json={"reason": "   "}), 422, "reason")
    assert_problem(client.post(url, headers=m.sup, json={"reason": "x" * 501}), 422, "reason")
    assert_problem(client.post(f"{JOBS}/987654321/reprint", headers=m.sup,
                               json={"reason": "again"}), 404)
    assert label_counts(db) == before and print_messages(db) == 3
    assert job(client, m.op, m.jobs[0]["id"]) == original


# --- station:// printers: the station app pulls ------------------------------------------------

@pytest.fixture()
def pulled(app, client, factory, auth):
    """A station:// station whose lot completed at MARK: three jobs waiting to be pulled."""
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["MARK"], printer_uri="station://")
    serials = _serials(3)
    lot = factory.lot(product, 3, serials=serials)
    op = auth("operator")
    complete(app, client, op, lot, "MARK", station)
    ids = sorted(j["id"] for j in jobs(client, op, lot_no=lot)["items"])
    return SimpleNamespace(station=station, lot=lot, op=op, ids=ids, serials=serials,
                           next=f"/api/v1/stations/{station}/labels/next",
                           ack=lambda i, code=station: f"/api/v1/stations/{code}/labels/{i}/ack")


def test_station_pull_hands_out_jobs_oldest_first(client, db, pulled):
    p = pulled
    assert len(p.ids) == 3 and print_messages(db) == 0  # nothing for the print workers
    assert {j["state"] for j in jobs(client, p.op, lot_no=p.lot)["items"]} == {"queued"}
    for expected, serial in zip(p.ids, p.serials):
        resp = client.get(p.next, headers=p.op)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        got = resp.get_json()
        assert (got["id"], got["state"], got["unit_serial"], got["attempts"]) == \
            (expected, "sent", serial, 1)
        assert got["zpl"].startswith("^XA") and got["sent_at"]
        assert hashlib.sha256(got["zpl"].encode()).hexdigest() == got["zpl_sha256"]
    empty = client.get(p.next, headers=p.op)
    assert empty.status_code == 204 and empty.data == b""
    assert {j["id"] for j in jobs(client, p.op, state="sent")["items"]} == set(p.ids)


def test_station_ack_printed_then_conflict(client, pulled):
    p = pulled
    assert_problem(client.post(p.ack(p.ids[0]), headers=p.op, json={"printed": True}), 409)
    job_id = client.get(p.next, headers=p.op).get_json()["id"]
    resp = client.post(p.ack(job_id), headers=p.op, json={"printed": True})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["state"] == "printed" and resp.get_json()["printed_at"]
    assert job(client, p.op, job_id)["state"] == "printed"
    assert_problem(client.post(p.ack(job_id), headers=p.op, json={"printed": True}), 409)
    assert job(client, p.op, job_id)["state"] == "printed"
    audit = client.get(f"/api/v1/lots/{p.lot}/dhr", headers=p.op).get_json()["audit"]
    assert [a["action"] for a in audit if a["entity_id"] == str(job_id)] == \
        ["label.queued", "label.sent", "label.printed"]


def test_station_ack_not_printed_records_the_printer_reason(client, pulled):
    p = pulled
    job_id = client.get(p.next, headers=p.op).get_json()["id"]
    resp = client.post(p.ack(job_id), headers=p.op,
                       json={"printed": False, "printer_reason": "paper_out"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert (resp.get_json()["state"], resp.get_json()["printer_reason"],
            resp.get_json()["printed_at"]) == ("failed", "paper_out", None)


def test_station_pull_refusals(client, factory, pulled):
    p = pulled
    other = factory.station(steps=["MARK"], printer_uri="station://")
    job_id = client.get(p.next, headers=p.op).get_json()["id"]
    assert client.get(f"/api/v1/stations/{other}/labels/next", headers=p.op).status_code == 204
    assert_problem(client.post(p.ack(job_id, other), headers=p.op, json={"printed": True}), 404)
    assert_problem(client.post(p.ack(job_id, "ST-NOPE"), headers=p.op,
                               json={"printed": True}), 404)
    assert_problem(client.post(p.ack(987654321), headers=p.op, json={"printed": True}), 404)
    assert_problem(client.get("/api/v1/stations/ST-NOPE/labels/next", headers=p.op), 404)
    assert_problem(client.post(p.ack(job_id), headers=p.op, json={"printed": "yes"}), 422,
                   "printed")
    assert_problem(client.post(p.ack(job_id), headers=p.op, json={}), 422, "printed")
    assert job(client, p.op, job_id)["state"] == "sent"


def test_device_printer_jobs_are_not_handed_to_the_station_app(client, marked):
    resp = client.get(f"/api/v1/stations/{marked.station}/labels/next", headers=marked.op)
    assert resp.status_code == 204
    assert {j["state"] for j in marked.jobs} == {"queued"}
    assert {j["state"] for j in jobs(client, marked.op, lot_no=marked.lot)["items"]} == {"queued"}


# --- stations with a printer profile ----------------------------------------------------------

PROFILE = {"dpi": 300, "width_dots": 600, "length_dots": 360, "darkness": 20}


def test_printer_profile_shapes_the_job_zpl(app, client, auth, factory, sim):
    admin, op = auth("admin"), auth("operator")
    uri = f"tcp://127.0.0.1:{sim.port}"
    resp = client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-300", "name": "300 dpi", "steps": ["MARK"], "printer_uri": uri,
        "printer_profile": PROFILE})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    lot = factory.lot(factory.product(routing=ROUTING), 1, serials=_serials(1))
    complete(app, client, op, lot, "MARK", "ST-300")
    (only,) = jobs(client, op, lot_no=lot)["items"]
    zpl = job(client, op, only["id"])["zpl"]
    assert "^PW600\n" in zpl and "^LL360\n" in zpl and "^MD20\n" in zpl
    assert "^FO24,18" in zpl  # [[2]],[[1.5]] mm at 300 dpi
    preview = client.get(f"{JOBS}/{only['id']}/preview.png", headers=op)
    assert preview.status_code == 200
    assert barcodes(preview.data)["Code128"] == only["unit_serial"]
    assert print_jobs(app, [only["id"]]) == ["printed"]
    assert sim.labels()[0].zpl.strip() == zpl.encode().strip()


def test_station_pull_printer_profile_belongs_to_its_station(app, client, auth, factory):
    """Every station:// printer is a different device: one's profile must not shape another's."""
    admin, op = auth("admin"), auth("operator")
    assert client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-P300", "name": "300 dpi", "steps": ["MARK"], "printer_uri": "station://",
        "printer_profile": PROFILE}).status_code == 201
    assert client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-P203", "name": "default", "steps": ["MARK"],
        "printer_uri": "station://"}).status_code == 201
    lot = factory.lot(factory.product(routing=ROUTING), 1, serials=_serials(1))
    complete(app, client, op, lot, "MARK", "ST-P203")
    zpl = client.get("/api/v1/stations/ST-P203/labels/next", headers=op).get_json()["zpl"]
    assert "^PW400\n" in zpl and "^LL240\n" in zpl and "^MD" not in zpl  # 50 x 30 mm, 203 dpi


@pytest.mark.parametrize("uri", ["lpt://x", "tcp://", "tcp://:9100", "tcp://host/path",
                                 "station://ST-01"])
def test_bad_printer_uri_is_422_naming_printer_uri(client, auth, db, uri):
    admin = auth("admin")
    before = label_counts(db)
    assert_problem(client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-BAD", "name": "Bad", "printer_uri": uri}), 422, "printer_uri")
    assert label_counts(db) == before
    assert client.get("/api/v1/stations", headers=admin).get_json()["items"] == []


@pytest.mark.parametrize("profile, field", [({"dpi": 250}, "printer_profile.dpi"),
                                            ({"darkness": 31}, "printer_profile.darkness"),
                                            ({"width_dots": 10}, "printer_profile.width_dots")])
def test_bad_printer_profile_is_422_naming_it(client, auth, db, profile, field):
    admin = auth("admin")
    before = label_counts(db)
    assert_problem(client.post("/api/v1/stations", headers=admin, json={
        "code": "ST-BAD", "name": "Bad", "printer_uri": "sim://", "printer_profile": profile}),
        422, field)
    assert label_counts(db) == before


# --- the device history record ----------------------------------------------------------------

def test_dhr_lists_every_label_and_each_completions_labels(app, client, marked):
    m = marked
    print_jobs(app, [j["id"] for j in m.jobs])
    reprint = client.post(f"{JOBS}/{m.jobs[1]['id']}/reprint", headers=m.sup,
                          json={"reason": "torn"}).get_json()
    pack = complete(app, client, m.op, m.lot, "PACK", m.station)
    (box,) = [j for j in jobs(client, m.op, lot_no=m.lot)["items"] if j["template"] == "box"]
    assert box_qr_has_lot(client, m.op, box["id"], m.lot)
    dhr = client.get(f"/api/v1/lots/{m.lot}/dhr", headers=m.op).get_json()
    labels = {lb["id"]: lb for lb in dhr["labels"]}
    assert list(labels) == [j["id"] for j in m.jobs] + [reprint["id"], box["id"]]
    for j in m.jobs:
        lb = labels[j["id"]]
        assert (lb["template"], lb["template_version"], lb["zpl_sha256"], lb["printer"],
                lb["state"], lb["reprint_reason"]) == \
            ("unit", 1, j["zpl_sha256"], m.uri, "printed", None)
    assert (labels[reprint["id"]]["reprint_reason"], labels[reprint["id"]]["state"],
            labels[reprint["id"]]["reprint_of"]) == ("torn", "queued", m.jobs[1]["id"])
    assert labels[box["id"]]["template"] == "box" and "data" not in labels[box["id"]]
    steps = {s["step"]: s for s in dhr["steps"]}
    (mark_c,) = steps["MARK"]["completions"]
    assert mark_c["id"] == m.cid
    assert [(lb["id"], lb["state"]) for lb in mark_c["labels"]] == \
        [(j["id"], "printed") for j in m.jobs] + [(reprint["id"], "queued")]
    (pack_c,) = steps["PACK"]["completions"]
    assert pack_c["id"] == pack
    assert [(lb["id"], lb["template"]) for lb in pack_c["labels"]] == [(box["id"], "box")]


def box_qr_has_lot(client, headers, job_id, lot_no) -> bool:
    """The box label's QR code (from the job's own preview) carries the lot number."""
    resp = client.get(f"{JOBS}/{job_id}/preview.png", headers=headers)
    assert resp.status_code == 200
    return lot_no in barcodes(resp.data)["QRCode"]
