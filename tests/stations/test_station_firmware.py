"""FLASH station firmware: download with progress, sha256 verify, ack; corrupt cache re-downloaded;
a FLASH completion carries the verified version + sha256 and is refused without one."""
from __future__ import annotations

import hashlib
import os

import requests
from PyQt5.QtCore import Qt

from stations.i18n import tr
from tests.stations.conftest import api_status
from tests.support.procs import wait_until

ROUTING = [{"step": "FLASH", "name": "Firmware flashing", "requires_firmware": True},
           {"step": "PACK", "name": "Packing"}]


def _release_firmware(stack, factory, product: str, image: bytes, version="1.4.2") -> int:
    admin = factory.headers("admin")
    resp = requests.post(stack.url + "/api/v1/firmware", headers=admin, timeout=30,
                         files={"file": ("fw.bin", image, "application/octet-stream")},
                         data={"product": product, "version": version})
    assert resp.status_code == 201, resp.text
    fid = resp.json()["id"]
    resp = requests.post(stack.url + f"/api/v1/firmware/{fid}/release", headers=admin, timeout=30)
    assert resp.status_code in (200, 202), resp.text
    return fid


def _sync(qtbot, window):
    with qtbot.waitSignal(window.firmware_panel.synced, timeout=60000) as done:
        qtbot.mouseClick(window.firmware_panel.button, Qt.LeftButton)
    assert not isinstance(done.args[0], Exception), done.args[0]
    return done.args[0]


def test_firmware_download_verify_ack_corrupt_cache_and_flash(stack, factory, make_station,
                                                              qtbot):
    _, user = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FLASH"], printer_uri=None)
    image = os.urandom(3 * 1024 * 1024 + 123)  # several chunks: the progress bar moves
    sha = hashlib.sha256(image).hexdigest()
    _release_firmware(stack, factory, product, image)
    operator = factory.headers("operator")
    wait_until(lambda: api_status(stack, operator, f"/api/v1/stations/{station}/firmware")
               ["items"], 60, 0.2, "the release to be assigned to the station")

    w = make_station(station, user)
    # Logging in at a station with assignments starts download + verify + ack by itself.
    qtbot.waitUntil(lambda: bool(w.firmware_panel.results) and not w.firmware_panel.busy,
                    timeout=60000)
    (assignment, verified, events, error), = w.firmware_panel.results
    assert error == "" and verified is not None, error
    assert events == ["downloaded", "acked"]
    assert verified.sha256 == sha and open(verified.path, "rb").read() == image
    assert w.firmware_panel.progress.value() == 1000
    verified_text = tr("firmware.verified", version="1.4.2", short=sha[:12])
    assert verified_text in w.firmware_panel.status.text()
    items = api_status(stack, operator, f"/api/v1/stations/{station}/firmware")["items"]
    assert [(i["state"], i["sha256"]) for i in items] == [("verified", sha)]
    assert w.ctx.firmware.downloads == 1

    # Corrupt the cached file: detected by its hash, downloaded again, verified again.
    with open(verified.path, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00garbage\x00")
    assert w.ctx.firmware.verified_for(product) is None  # touched: no longer trusted
    progress = []
    w.firmware_panel.progress.valueChanged.connect(progress.append)
    (_, verified2, events2, error2), = _sync(qtbot, w)
    assert progress and max(progress) == 1000 and len(set(progress)) > 2
    assert error2 == "" and events2 == ["corrupt", "downloaded", "acked"]
    assert w.ctx.firmware.downloads == 2 and w.ctx.firmware.corrupt_found == 1
    assert open(verified2.path, "rb").read() == image
    assert tr("firmware.corrupt", version="1.4.2") in w.firmware_panel.status.text()
    # An intact cache is reused: no third download.
    (_, _, events3, _), = _sync(qtbot, w)
    assert events3 == ["cached", "acked"] and w.ctx.firmware.downloads == 2

    # The FLASH completion carries the verified version and sha256 and is accepted.
    lot = factory.lot(product, quantity=1)
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert w.firmware_panel.isVisible()
    with qtbot.waitSignal(w.result_shown, timeout=20000) as result:
        qtbot.mouseClick(w.complete_button, Qt.LeftButton)
    entry = result.args[0]
    assert entry.body["firmware_version"] == "1.4.2" and entry.body["firmware_sha256"] == sha
    assert entry.state == "accepted", entry.reasons
    done = api_status(stack, operator, f"/api/v1/lots/{lot}")["completions"]
    assert [(c["status"], c["firmware_sha256"]) for c in done] == [("accepted", sha)]


def test_interrupted_download_resumes_with_range(stack, factory, make_station, qtbot):
    _, user = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FLASH"], printer_uri=None)
    image = os.urandom(2 * 1024 * 1024)
    _release_firmware(stack, factory, product, image, version="2.0.0")
    operator = factory.headers("operator")
    wait_until(lambda: api_status(stack, operator, f"/api/v1/stations/{station}/firmware")
               ["items"], 60, 0.2, "the assignment")
    w = make_station(station, user)
    qtbot.waitUntil(lambda: bool(w.firmware_panel.results) and not w.firmware_panel.busy,
                    timeout=60000)
    manager = w.ctx.firmware
    assignment, = manager.assignments()
    manager.path(assignment).unlink()  # as if the first download had been cut off midway
    part = manager.dir / f"{assignment.sha256}.part"
    part.write_bytes(image[:700_000])  # what a cut connection left behind
    ranges = []
    real = w.ctx.api.download

    def spy(url, handle, offset=0, etag=None, progress=None, **kw):
        ranges.append(offset)
        return real(url, handle, offset, etag, progress, **kw)
    w.ctx.api.download = spy
    (_, verified, events, error), = _sync(qtbot, w)
    assert error == "" and events == ["downloaded", "acked"]
    assert ranges == [700_000], "the download resumed where the partial file ended"
    assert open(verified.path, "rb").read() == image


def test_flash_completion_refused_without_verified_firmware(stack, factory, make_station, qtbot):
    _, user = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FLASH"], printer_uri=None)
    lot = factory.lot(product, quantity=1)
    w = make_station(station, user)
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert w.firmware_panel.isVisible()
    assert w.firmware_panel.status.text() == tr("error.firmware_missing", product=product)
    assert w.complete() is None
    assert w.result_label.text() == tr("error.firmware_missing", product=product)
    assert w.ctx.queue.all() == [], "nothing may be queued for a FLASH without verified firmware"
    assert api_status(stack, factory.headers("operator"), f"/api/v1/lots/{lot}")[
        "completions"] == []


def test_the_missing_firmware_warning_survives_a_background_sync(stack, factory, make_station,
                                                                   qtbot):
    """A scan during the start-up sync (CI met it): the warning shows and stays after it."""
    _, user = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FLASH"], printer_uri=None)
    lot = factory.lot(product, quantity=1)
    w = make_station(station, user)
    panel = w.firmware_panel
    qtbot.waitUntil(lambda: not panel.busy, timeout=10000)  # the start-up sync is over
    panel.busy = True  # as if it were still running when the lot is scanned
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    missing = tr("error.firmware_missing", product=product)
    assert panel.status.text() == missing
    panel._done([])  # the sync ends: nothing assigned to this station
    assert panel.status.text() == missing
    assert w.complete() is None and w.ctx.queue.all() == []
