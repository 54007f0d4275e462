"""Firmware services called directly (no Celery): upload checks, release -> distribute ->
assignments, supersede / revoke, acknowledgements, and the worker's FLASH completion rule."""
from __future__ import annotations

import hashlib
import io
import os
import uuid

import pytest

from tests.support import firmwaredata
from sqlalchemy import func, select

from web.models import AuditEvent, Completion, Firmware, FirmwareAssignment, OutboxMessage
from web.services import completions, dhr, lots, products
from web.services import firmware as svc
from web.services.firmware import assignments as asg
from web.services.audit import Actor
from web.services.completions.processing import process_completion
from web.services.storage_sync import area_storage

ADMIN = Actor(None, "admin-test")
FLASH_ROUTING = [
    {"step": "SMT", "name": "SMT"},
    {"step": "FLASH", "name": "Flash", "requires_firmware": True},
    {"step": "FCT", "name": "Functional test"},
]
OTHER_ROUTING = [{"step": "PROG", "name": "Program", "requires_firmware": True}]






@pytest.fixture()
def line(app, factory, fw_dir):
    """Two products; stations A, B flash P, C does SMT, D programs Q, E is inactive."""
    p, q = factory.product(routing=FLASH_ROUTING), factory.product(routing=OTHER_ROUTING)
    st = {"A": factory.station(steps=["FLASH"]), "B": factory.station(steps=["FLASH", "FCT"]),
          "C": factory.station(steps=["SMT"]), "D": factory.station(steps=["PROG"]),
          "E": factory.station(steps=["FLASH"])}
    with app.app_context():
        from web.extensions import db
        from web.models import Station
        db.session.execute(Station.__table__.update().where(Station.code == st["E"])
                           .values(active=False))
        db.session.commit()
    uid, name = factory.user("operator")
    return {"P": p, "Q": q, "st": st, "op": Actor(uid, name)}


def upload(app, product, version, data=None, **kw):
    data = image() if data is None else data
    with app.app_context():
        fw = svc.upload(product, version, svc.measure(io.BytesIO(data), "fw.bin"), ADMIN, **kw)
        return fw.id


def released(app, product, version, data=None):
    """Upload, release and distribute (what the io worker does); returns the firmware id."""
    fid = upload(app, product, version, data)
    with app.app_context():
        svc.release(fid, ADMIN)
        assert svc.distribute(fid).startswith("distributed")
    return fid


def assignments(app, fid) -> dict[str, str]:
    with app.app_context():
        return {a.station.code: a.state for a in asg.firmware_assignments(fid)}


def assignment_id(app, fid, station) -> int:
    with app.app_context():
        return next(a.id for a in asg.firmware_assignments(fid) if a.station.code == station)


def count(db, model, *where) -> int:
    n = db.session.scalar(select(func.count()).select_from(model).where(*where))
    db.session.rollback()
    return n


def stored_keys(app) -> list[str]:
    with app.app_context():
        return [o.key for o in area_storage("firmware").list("")]


# --- upload -----------------------------------------------------------------------------------

def test_upload_stores_the_bytes_and_records_a_draft(app, line, db):
    data = image(10_000)
    fid = upload(app, line["P"], "1.0.0", data, notes="first")
    with app.app_context():
        fw = svc.get_firmware(fid)
        assert (fw.state, fw.size, fw.sha256, fw.notes) == (
            "draft", 10_000, hashlib.sha256(data).hexdigest(), "first")
        assert fw.storage_key.startswith(f"{line['P']}/1.0.0/") and fw.storage_key.endswith(
            "-fw.bin")
        with area_storage("firmware").open(fw.storage_key) as fh:
            assert fh.read() == data
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action ==
                                                           "firmware.uploaded"))
        assert event.entity_id == str(fid) and event.after["sha256"] == fw.sha256


@pytest.mark.parametrize("kw, field", [
    ({"version": "1.0"}, "version"), ({"version": "v1.0.0"}, "version"),
    ({"version": "01.0.0"}, "version"), ({"data": b""}, "file"),
    ({"expected_sha256": "0" * 64}, "sha256")])
def test_bad_uploads_store_nothing(app, line, db, kw, field):
    data = kw.pop("data", image())
    version = kw.pop("version", "1.0.0")
    with app.app_context(), pytest.raises(svc.InvalidImage) as exc:
        svc.upload(line["P"], version, svc.measure(io.BytesIO(data), "x.bin"), ADMIN, **kw)
    assert exc.value.field == field
    assert stored_keys(app) == [] and count(db, Firmware) == 0


def test_unknown_product_duplicate_version_and_size_limit(app, line, db):
    upload(app, line["P"], "1.0.0")
    with app.app_context():
        with pytest.raises(svc.UnknownProduct):
            svc.upload("NOPE", "1.0.0", svc.measure(io.BytesIO(image()), "x"), ADMIN)
        with pytest.raises(svc.VersionExists):
            svc.upload(line["P"], "1.0.0", svc.measure(io.BytesIO(image()), "x"), ADMIN)
        with pytest.raises(svc.TooLarge):
            svc.measure(io.BytesIO(image(2000)), "x", limit=1999)
        spool = svc.HashingSpool(1000)
        spool.write(b"x" * 1000)
        with pytest.raises(svc.TooLarge):
            spool.write(b"y")
        spool.close()
    # the same version of another product is fine
    upload(app, line["Q"], "1.0.0")
    assert len(stored_keys(app)) == 2 and count(db, Firmware) == 2


def test_a_refused_database_row_removes_the_stored_object(app, line, db, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("database refused")
    monkeypatch.setattr(svc, "record", boom)
    with app.app_context(), pytest.raises(RuntimeError):
        svc.upload(line["P"], "1.0.0", svc.measure(io.BytesIO(image()), "x"), ADMIN)
    assert stored_keys(app) == [] and count(db, Firmware) == 0


# --- release, distribution ------------------------------------------------------------------

def test_release_enqueues_distribution_on_the_io_queue(app, line, db):
    fid = upload(app, line["P"], "1.0.0")
    with app.app_context():
        svc.release(fid, ADMIN)
        msg = db.session.scalar(select(OutboxMessage))
        assert (msg.task, msg.queue, msg.args) == ("firmware.distribute", "io", [fid])
        assert svc.get_firmware(fid).state == "released"
        svc.release(fid, ADMIN)  # releasing again replaces the pending message
        assert count(db, OutboxMessage) == 1
        assert svc.distribute(fid) == "distributed to 2 stations"
    assert count(db, OutboxMessage) == 0


def test_distribution_assigns_exactly_the_stations_of_the_current_routing(app, line, db):
    fid = released(app, line["P"], "1.0.0")
    assert assignments(app, fid) == {line["st"]["A"]: "pending", line["st"]["B"]: "pending"}
    qid = released(app, line["Q"], "1.0.0")
    assert assignments(app, qid) == {line["st"]["D"]: "pending"}
    assert assignments(app, fid) == {line["st"]["A"]: "pending", line["st"]["B"]: "pending"}
    # A new routing revision moves the firmware requirement to FCT: B alone serves it.
    routing = [dict(s, requires_firmware=s["step"] == "FCT") for s in FLASH_ROUTING]
    with app.app_context():
        products.add_revision(line["P"], routing, ADMIN)
    f2 = released(app, line["P"], "1.1.0")
    assert assignments(app, f2) == {line["st"]["B"]: "pending"}
    assert assignments(app, fid) == {line["st"]["A"]: "superseded",
                                     line["st"]["B"]: "superseded"}
    with app.app_context():
        audit = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "firmware.distributed", AuditEvent.entity_id == str(f2)))
        assert audit.after == {"stations": [line["st"]["B"]], "superseded": 2}


def test_distribution_is_idempotent(app, line, db):
    fid = released(app, line["P"], "1.0.0")
    before = count(db, AuditEvent)
    with app.app_context():
        svc.release(fid, ADMIN)
        svc.distribute(fid)
        svc.distribute(fid)
    assert assignments(app, fid) == {line["st"]["A"]: "pending", line["st"]["B"]: "pending"}
    assert count(db, AuditEvent) == before + 2  # firmware.released + firmware.distributed
    assert count(db, FirmwareAssignment) == 2


def test_a_newer_release_supersedes_and_a_late_older_message_changes_nothing(app, line, db):
    v1 = released(app, line["P"], "1.0.0")
    a = line["st"]["A"]
    with app.app_context():
        asg.ack(a, assignment_id(app, v1, a), hashlib.sha256(image()).hexdigest(), ADMIN)
    v2 = upload(app, line["P"], "2.0.0", image(seed="b"))
    with app.app_context():
        svc.release(v2, ADMIN)
        assert svc.distribute(v2).startswith("distributed")
        assert svc.distribute(v1) == "skipped"  # a redelivered message of the older release
    assert set(assignments(app, v1).values()) == {"superseded"}
    assert set(assignments(app, v2).values()) == {"pending"}
    # Releasing v1 again (a rollback) makes the stations prove v1 again.
    with app.app_context():
        svc.release(v1, ADMIN)
        svc.distribute(v1)
    assert set(assignments(app, v1).values()) == {"pending"}
    assert set(assignments(app, v2).values()) == {"superseded"}


def test_messages_arriving_out_of_order_leave_the_newest_release_current(app, line, db):
    v1, v2 = upload(app, line["P"], "1.0.0"), upload(app, line["P"], "1.0.1", image(seed="c"))
    with app.app_context():
        svc.release(v1, ADMIN)
        svc.release(v2, ADMIN)
        assert svc.distribute(v2).startswith("distributed")
        assert svc.distribute(v1) == "skipped"  # v1's message was overtaken by v2's release
    assert assignments(app, v1) == {}
    assert set(assignments(app, v2).values()) == {"pending"}
    assert count(db, OutboxMessage) == 0


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_a_damaged_object_fails_the_release_visibly(app, line, db, fw_dir, damage):
    fid = upload(app, line["P"], "1.0.0")
    with app.app_context():
        key = svc.get_firmware(fid).storage_key
        svc.release(fid, ADMIN)
    path = fw_dir / key
    if damage == "corrupt":
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        os.truncate(path, 100)
    else:
        path.unlink()
    with app.app_context():
        assert svc.distribute(fid) == "failed"
        fw = svc.get_firmware(fid)
        assert fw.state == "draft" and fw.released_at is None
        assert ("missing" if damage == "delete" else "hashes to") in fw.release_error
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "firmware.release_failed"))
        assert event.before["state"] == "released" and event.after["state"] == "draft"
    assert assignments(app, fid) == {} and count(db, OutboxMessage) == 0


def test_revoke_revokes_assignments_and_blocks_release(app, line, db):
    fid = released(app, line["P"], "1.0.0")
    with app.app_context():
        fw = svc.revoke(fid, "brown-out bug", ADMIN)
        assert (fw.state, fw.revoke_reason) == ("revoked", "brown-out bug")
        with pytest.raises(svc.FirmwareStateError):
            svc.release(fid, ADMIN)
        with pytest.raises(svc.FirmwareStateError):
            svc.revoke(fid, "again", ADMIN)
        assert svc.distribute(fid) == "skipped"
        assert asg.station_assignments(line["st"]["A"]) == []
        revoked = db.session.scalars(select(AuditEvent.entity_id).where(
            AuditEvent.action == "firmware_assignment.revoked")).all()
        assert len(revoked) == 2
    assert set(assignments(app, fid).values()) == {"revoked"}


# --- acknowledgements -------------------------------------------------------------------------

def test_ack_with_the_right_sha_verifies_and_a_wrong_one_fails(app, line, db):
    data = image()
    fid = released(app, line["P"], "1.0.0", data)
    a, b = line["st"]["A"], line["st"]["B"]
    good, bad = hashlib.sha256(data).hexdigest(), hashlib.sha256(b"other").hexdigest()
    with app.app_context():
        asg.mark_delivered(fid, a, ADMIN)
        assert asg.ack(a, assignment_id(app, fid, a), good.upper(), ADMIN).state == "verified"
        failed = asg.ack(b, assignment_id(app, fid, b), bad, ADMIN)
        assert (failed.state, failed.acked_sha256) == ("failed", bad)
        events = {e.entity_id: e for e in db.session.scalars(select(AuditEvent).where(
            AuditEvent.entity_type == "firmware_assignment",
            AuditEvent.action.in_(["firmware_assignment.verified",
                                   "firmware_assignment.failed"])))}
        assert events[str(failed.id)].after["expected_sha256"] == good
        assert events[str(failed.id)].after["acked_sha256"] == bad
        assert events[str(assignment_id(app, fid, a))].before == {"state": "delivered"}
        # A station cannot acknowledge another station's assignment.
        with pytest.raises(asg.AssignmentNotFound):
            asg.ack(a, assignment_id(app, fid, b), good, ADMIN)
        # A failed station downloads again and proves the right bytes.
        assert asg.ack(b, assignment_id(app, fid, b), good, ADMIN).state == "verified"
        n = count(db, AuditEvent)
        asg.ack(b, assignment_id(app, fid, b), good, ADMIN)  # the same ack again: no change
        assert count(db, AuditEvent) == n
    with app.app_context():
        svc.revoke(fid, "recall", ADMIN)
        with pytest.raises(asg.AssignmentStateError):
            asg.ack(a, assignment_id(app, fid, a), good, ADMIN)


# --- the completion rule at a FLASH step ------------------------------------------------------

def flash(app, line, lot_no, station="A", **fw):
    """Submit a FLASH completion and run the worker's rule; returns (status, codes, row)."""
    with app.app_context():
        body = {"lot_no": lot_no, "step": "FLASH", "station": line["st"][station], **fw}
        cid = completions.submit(body, uuid.uuid4().hex, line["op"]).id
        process_completion(cid)
        c = completions.get_completion(cid)
        return c.status, [r["code"] for r in c.reasons], c


def lot_at_flash(app, line, factory, product=None):
    product = product or line["P"]
    lot = factory.lot(product, quantity=1)
    with app.app_context():
        smt = factory.station(steps=["SMT"])
        cid = completions.submit({"lot_no": lot, "step": "SMT", "station": smt},
                                 uuid.uuid4().hex, line["op"]).id
        assert process_completion(cid) == "accepted"
    return lot


def test_flash_completion_is_accepted_with_verified_firmware(app, line, factory, db):
    data = image(seed="flash")
    sha = hashlib.sha256(data).hexdigest()
    fid = released(app, line["P"], "1.2.0", data)
    with app.app_context():
        asg.ack(line["st"]["A"], assignment_id(app, fid, line["st"]["A"]), sha, ADMIN)
    lot = lot_at_flash(app, line, factory)
    status, codes, c = flash(app, line, lot, firmware_version="1.2.0")
    assert (status, codes) == ("accepted", [])
    assert (c.firmware_id, c.firmware_sha256) == (fid, sha)  # the server's sha256 is stored
    with app.app_context():
        record = dhr.build(lots.get_lot(lot))
        (row,) = next(s for s in record["steps"] if s["step"] == "FLASH")["completions"]
        assert row["firmware_sha256"] == sha and row["firmware_version"] == "1.2.0"
        assert row["firmware"]["id"] == fid and row["firmware"]["sha256"] == sha
        assert sha in dhr.to_csv(record)
    # with the sha256 given by the station, too
    lot2 = lot_at_flash(app, line, factory)
    assert flash(app, line, lot2, firmware_version="1.2.0", firmware_sha256=sha)[:2] == (
        "accepted", [])


def test_flash_completion_is_rejected_for_each_reason(app, line, factory, db):
    data = image(seed="r")
    sha = hashlib.sha256(data).hexdigest()
    fid = released(app, line["P"], "1.0.0", data)
    a = line["st"]["A"]
    with app.app_context():
        asg.ack(a, assignment_id(app, fid, a), sha, ADMIN)
        asg.ack(line["st"]["B"], assignment_id(app, fid, line["st"]["B"]), "0" * 64, ADMIN)
    upload(app, line["P"], "1.1.0-rc.1")  # a draft
    released(app, line["Q"], "3.0.0")  # another product's release
    lot = lot_at_flash(app, line, factory)
    cases = [
        ({}, "A", "firmware_required"),
        ({"firmware_version": "1.1.0-rc.1"}, "A", "firmware_not_released"),  # draft
        ({"firmware_version": "9.9.9"}, "A", "firmware_not_released"),  # unknown
        ({"firmware_version": "3.0.0"}, "A", "firmware_not_released"),  # another product's
        ({"firmware_version": "1.0.0", "firmware_sha256": "ab" * 32}, "A", "firmware_mismatch"),
        ({"firmware_version": "1.0.0"}, "B", "firmware_not_verified"),  # its ack failed
    ]
    for fw, station, code in cases:
        status, codes, c = flash(app, line, lot, station, **fw)
        assert (status, codes) == ("rejected", [code]), (fw, station)
        assert c.firmware_id is None
    # revoked firmware is not released any more, even where it was verified
    with app.app_context():
        svc.revoke(fid, "recall", ADMIN)
    assert flash(app, line, lot, "A", firmware_version="1.0.0")[:2] == (
        "rejected", ["firmware_not_released"])
    assert count(db, Completion, Completion.status == "accepted", Completion.step == "FLASH") == 0


def test_a_superseded_firmware_is_not_verified_any_more(app, line, factory, db):
    v1 = released(app, line["P"], "1.0.0")
    a = line["st"]["A"]
    with app.app_context():
        asg.ack(a, assignment_id(app, v1, a), hashlib.sha256(image()).hexdigest(), ADMIN)
    lot = lot_at_flash(app, line, factory)
    released(app, line["P"], "1.1.0", image(seed="new"))
    assert flash(app, line, lot, firmware_version="1.0.0")[:2] == (
        "rejected", ["firmware_not_verified"])


# --- CLI: firmware upload / list, and seed-demo's demo firmware -------------------------------

def test_cli_upload_list_and_release(app, line, db, tmp_path):
    data = image(3 * 1024 * 1024 + 7, seed="cli")
    path = tmp_path / "nh-fw.bin"
    path.write_bytes(data)
    runner = app.test_cli_runner()
    up = runner.invoke(args=["firmware", "upload", str(path), "--product", line["P"],
                             "--version", "7.0.0", "--release"])
    assert up.exit_code == 0, up.output
    assert hashlib.sha256(data).hexdigest() in up.output and "released" in up.output
    with app.app_context():
        fw = db.session.scalar(select(Firmware).where(Firmware.version == "7.0.0"))
        assert (fw.state, fw.size) == ("released", len(data))
        with area_storage("firmware").open(fw.storage_key) as fh:
            assert fh.read() == data
        msg = db.session.scalar(select(OutboxMessage))
        assert (msg.task, msg.queue, msg.args) == ("firmware.distribute", "io", [fw.id])
        db.session.rollback()
    listed = runner.invoke(args=["firmware", "list", "--product", line["P"]])
    assert listed.exit_code == 0 and "7.0.0" in listed.output and "released" in listed.output
    for args, message in [(["--version", "7.0.0"], "already has firmware"),
                          (["--version", "7.0"], "not a semantic version"),
                          (["--version", "7.0.1", "--sha256", "0" * 64], "hash to")]:
        bad = runner.invoke(args=["firmware", "upload", str(path), "--product", line["P"],
                                  *args])
        assert bad.exit_code == 1 and message in bad.output, bad.output
    assert len(stored_keys(app)) == 1


def test_seed_demo_releases_firmware_the_demo_flash_stations_can_use(app, db, fw_dir):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "released and verified on ST-03, ST-04" in first.output
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0 and "firmware NH-100 1.0.0 exists" in again.output
    with app.app_context():
        (fw,) = db.session.scalars(select(Firmware)).all()
        assert (fw.state, fw.version) == ("released", "1.0.0")
        states = {a.station.code: a.state for a in asg.firmware_assignments(fw.id)}
        assert states == {"ST-03": "verified", "ST-04": "verified"}
        with area_storage("firmware").open(fw.storage_key) as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == fw.sha256
        demo = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "firmware_assignment.verified"))
        assert "demo" in demo.actor
        from web.models import User
        op = db.session.scalar(select(User).where(User.username == "operator"))
        actor = Actor(op.id, op.username)
        lot = lots.create_lot("NH-100", 1, None, None, actor).lot_no
        for step, station, extra in [("SMT", "ST-01", {}),
                                     ("FLASH", "ST-03", {"firmware_version": "1.0.0"})]:
            cid = completions.submit({"lot_no": lot, "step": step, "station": station, **extra},
                                     uuid.uuid4().hex, actor).id
            assert process_completion(cid) == "accepted", completions.get_completion(cid).reasons
        assert completions.get_completion(cid).firmware_sha256 == fw.sha256
        db.session.rollback()


def image(n: int = 4096, seed: str = "a") -> bytes:
    """Small deterministic images (this module's default size)."""
    return firmwaredata.image(n, seed)
