"""The printers page: status and queues, waiting and failed jobs, reprints and test prints
queued with their reason and audit, template previews; supervisors and admins only. That the
labels then reach the printer through the workers is test_browser_pipeline.py's."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from web.models import LabelJob, Lot
from web.services import completions, labels
from web.services.audit import Actor
from web.services.completions.processing import process_completion

from .conftest import csrf_token, log_in

ROUTING = [{"step": "PACK", "name": "Packing", "label_template": "unit"}]


def _jobs(app, db, factory, printer_uri: str, n: int = 2) -> list[int]:
    uid, name = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["PACK"], printer_uri=printer_uri)
    lot = factory.lot(product, n, serials=[f"SN-{uuid.uuid4().hex[:8]}" for _ in range(n)])
    with app.app_context():
        cid = completions.submit({"lot_no": lot, "step": "PACK", "station": station},
                                 uuid.uuid4().hex, Actor(uid, name)).id
        assert process_completion(cid) == "accepted"
        return list(db.session.scalars(select(LabelJob.id).where(
            LabelJob.completion_id == cid).order_by(LabelJob.id)))


def test_printers_page_shows_printers_and_queues_a_reprint(app, db, factory, console):
    uri = "tcp://127.0.0.1:9"
    ids = _jobs(app, db, factory, uri)
    client = console("supervisor")
    page = client.get("/console/printers").get_data(as_text=True)
    assert f"<code>{uri}</code>" in page and 'id="templates"' in page
    token = csrf_token(client, "/console/printers")
    resp = client.post(f"/console/labels/jobs/{ids[0]}/reprint",
                       data={"reason": "라벨 훼손", "csrf_token": token})
    assert resp.status_code == 302 and resp.location.endswith("/console/printers#job-%d" % (
        ids[-1] + 1))
    again = db.session.scalar(select(LabelJob).where(LabelJob.reprint_of == ids[0]))
    assert again.reprint_reason == "라벨 훼손" and again.state == "queued"
    assert again.zpl == labels.get_job(ids[0]).zpl  # the same label, not a new rendering
    assert f'id="job-{again.id}"' in client.get("/console/printers").get_data(as_text=True)


def test_a_reprint_from_the_lot_page_returns_to_it(app, db, factory, console):
    ids = _jobs(app, db, factory, "tcp://127.0.0.1:9", n=1)
    lot_no = db.session.get(Lot, labels.get_job(ids[0]).lot_id).lot_no
    client = console("supervisor")
    page = client.get(f"/console/lots/{lot_no}").get_data(as_text=True)
    assert f'action="/console/labels/jobs/{ids[0]}/reprint"' in page
    token = csrf_token(client, f"/console/lots/{lot_no}")
    resp = client.post(f"/console/labels/jobs/{ids[0]}/reprint",
                       data={"reason": "", "lot_no": lot_no, "csrf_token": token})
    assert resp.location.endswith(f"/console/lots/{lot_no}#labels")  # refused: no reason
    resp = client.post(f"/console/labels/jobs/{ids[0]}/reprint",
                       data={"reason": "찢어짐", "lot_no": lot_no, "csrf_token": token})
    again = db.session.scalar(select(LabelJob).where(LabelJob.reprint_of == ids[0]))
    assert resp.location.endswith(f"/console/lots/{lot_no}#label-{again.id}")
    assert "찢어짐" in client.get(f"/console/lots/{lot_no}").get_data(as_text=True)
    operator = app.test_client()  # a browser of its own: the console's client is logged in
    assert log_in(operator, factory.user("operator")[1]).status_code == 302
    assert "/reprint" not in operator.get(f"/console/lots/{lot_no}").get_data(as_text=True)


def test_failed_jobs_are_listed_with_their_reason(app, db, factory, console):
    ids = _jobs(app, db, factory, "tcp://127.0.0.1:9", n=1)
    db.session.execute(LabelJob.__table__.update().where(LabelJob.id == ids[0]).values(
        state="failed", error="printer unreachable: connection refused"))
    db.session.commit()
    page = console("admin").get("/console/printers").get_data(as_text=True)
    failed = page.split('id="failed-jobs"')[1]
    assert f'id="job-{ids[0]}"' in failed and "connection refused" in failed


def test_template_previews_are_png(console, db):
    client = console("supervisor")
    page = client.get("/console/printers").get_data(as_text=True)
    assert "/console/labels/templates/unit/1.png" in page
    resp = client.get("/console/labels/templates/unit/1.png")
    assert resp.status_code == 200 and resp.data.startswith(b"\x89PNG")
    assert client.get("/console/labels/templates/unit/99.png").status_code in (404, 422)


def test_operators_do_not_see_printers(console, db):
    client = console("operator")
    assert client.get("/console/printers").status_code == 403
    assert "/console/printers" not in client.get("/console/").get_data(as_text=True)


def test_test_print_is_queued_and_audited(app, db, factory, console):
    uri = "tcp://127.0.0.1:9"
    factory.station(steps=["PACK"], printer_uri=uri)
    client = console("supervisor")
    token = csrf_token(client, "/console/printers")
    assert client.post("/console/printers/test", data={
        "printer": uri, "csrf_token": token}).status_code == 302
    job = db.session.scalar(select(LabelJob).where(LabelJob.reason == "test"))
    assert job.printer_uri == uri and job.created_by == client.console_user
    assert job.state == "queued" and job.reason == "test"
    from web.models import AuditEvent
    assert db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity_type == "label_job", AuditEvent.entity_id == str(job.id))
        .order_by(AuditEvent.id)).first() == "label.test_print"
    resp = client.post("/console/printers/test", data={"printer": "tcp://nowhere:9100",
                                                       "csrf_token": token},
                       follow_redirects=True)
    assert "unknown printer" in resp.get_data(as_text=True)
