"""station:// labels name the server's TrueType label font: the station fetches it (cached in its
data folder, revalidated with If-None-Match) and stores it on its own printer once (~DY)."""
from __future__ import annotations

import json
import uuid
import urllib.request

import pytest
import requests
from PyQt5.QtCore import Qt

from printers import LabelFont, PrinterSimulator, field_hex, preview_png
from stations.api_client import ApiClient
from stations.printing.fonts import FontCache, named_fonts
from tests.stations.conftest import PASSWORD
from tests.support.factories import SYSTEM
from web.services import products

NAME = "뉴로허브 센서 모듈"
ROUTING = [{"step": "SMT", "name": "SMT assembly", "label_template": "lot"},
           {"step": "PACK", "name": "Packing"}]


@pytest.fixture()
def server_font(stack, factory) -> LabelFont:
    """The label font as the server serves it."""
    resp = requests.get(stack.url + "/api/v1/labels/font", headers=factory.headers("operator"),
                        timeout=10)
    assert resp.status_code == 200, resp.text
    return LabelFont(resp.content)


def _sim_files(sim: PrinterSimulator) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{sim.control_port}/status") as resp:
        return json.loads(resp.read())["files"]


def _complete(qtbot, w, lot: str) -> None:
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    with qtbot.waitSignal(w.result_shown, timeout=20000) as result:
        qtbot.mouseClick(w.complete_button, Qt.LeftButton)
    assert result.args[0].state == "accepted"


def test_station_stores_the_label_font_on_its_printer_once(stack, factory, make_station, qtbot,
                                                           server_font, tmp_path):
    _, user = factory.user("operator")
    product = "KR-" + uuid.uuid4().hex[:8].upper()
    with factory.app.app_context():
        products.create_product(product, NAME, ROUTING, SYSTEM)
    station = factory.station(steps=["SMT"], printer_uri="station://")
    lots = [factory.lot(product, quantity=2) for _ in range(3)]
    data_dir = tmp_path / "station"
    with PrinterSimulator(control_port=0, render=True) as sim:
        w = make_station(station, user, data_dir=data_dir,
                         printer_uri=f"tcp://127.0.0.1:{sim.port}")
        for count, lot in enumerate(lots[:2], start=1):
            _complete(qtbot, w, lot)
            qtbot.waitUntil(lambda count=count: sim.label_count == count, timeout=20000)
        font = server_font
        assert _sim_files(sim) == {font.path: {"bytes": len(font.data), "sha256": font.sha256,
                                               "downloads": 1}}
        for label, lot in zip(sim.labels(), lots):
            assert lot.encode() in label.zpl and field_hex(NAME).encode() in label.zpl
            assert named_fonts(label.zpl) == [font.path]
            # Drawn with the font the printer holds: no render error, no ASCII stand-ins.
            assert label.render_error is None and label.adaptations == []
            assert label.png == preview_png(label.zpl, fonts={font.path: font.data})[0]
        assert w.ctx.labels.fonts.fetches == 1
        assert (data_dir / "fonts" / f"{font.sha256}.ttf").read_bytes() == font.data
        assert w.ctx.api.label_font(font.sha256) == (None, font.sha256)  # 304: still current
        w.shutdown()

    # A restarted station with a new printer sends the font from its cache, not the server's.
    with PrinterSimulator(control_port=0, render=True) as sim2:
        w2 = make_station(station, user, data_dir=data_dir,
                          printer_uri=f"tcp://127.0.0.1:{sim2.port}")
        _complete(qtbot, w2, lots[2])
        qtbot.waitUntil(lambda: sim2.label_count == 1, timeout=20000)
        assert _sim_files(sim2)[font.path]["downloads"] == 1
        assert sim2.labels()[0].render_error is None
        assert w2.ctx.labels.fonts.fetches == 0


def test_font_cache_fetches_once_and_refetches_a_damaged_copy(stack, factory, server_font,
                                                              tmp_path):
    _, user = factory.user("operator")
    api = ApiClient(stack.url, "ST-FONT")
    api.login(user, PASSWORD)
    font = server_font
    cache = FontCache(api, tmp_path / "fonts")
    assert cache.get(font.path).data == font.data and cache.fetches == 1
    assert cache.get(font.path.lower()).data == font.data and cache.fetches == 1
    assert cache.get("E:NH000000.TTF") is None  # the server serves another font: 304
    assert cache.fetches == 1
    again = FontCache(api, tmp_path / "fonts")  # a new process: from disk, no download
    assert again.get(font.path).data == font.data and again.fetches == 0
    stored = tmp_path / "fonts" / f"{font.sha256}.ttf"
    stored.write_bytes(font.data[:1000])  # e.g. a disk that filled up mid-write long ago
    damaged = FontCache(api, tmp_path / "fonts")
    assert damaged.get(font.path).data == font.data and damaged.fetches == 1
    assert stored.read_bytes() == font.data


def test_a_label_whose_font_cannot_be_had_waits_or_is_reported(stack, factory, server_font,
                                                              tmp_path):
    from printers import ensure_font, reset_simulated_printers, simulated_printer
    from stations.printing import LabelService
    from stations.queue import CompletionQueue
    font = server_font
    _, user = factory.user("operator")
    station = factory.station(steps=["SMT"], printer_uri="station://")
    label = (f"^XA^CI28{font.assign_command()}^FO10,10^AKN,24,24"
             f"^FH\\^FD{field_hex(NAME)}^FS^XZ")
    reset_simulated_printers()

    def service(name: str, api: ApiClient) -> LabelService:
        (tmp_path / name).mkdir()
        queue = CompletionQueue(tmp_path / name / "queue.sqlite3")
        return LabelService(api, queue, f"sim://{name}", station_printer=lambda: "station://")

    # Server unreachable, nothing cached: the job waits (nothing sent) rather than print wrong.
    offline = ApiClient("http://127.0.0.1:9", station, timeout=0.5)
    offline.login_offline(user, PASSWORD)
    waiting = service("offline", offline)
    waiting.queue.label_pulled(1, label)
    waiting.tick()
    assert [r["state"] for r in waiting.queue.labels(("pulled",))] == ["pulled"]
    assert simulated_printer("offline").label_count == 0
    # ... but a printer that already holds the font prints it, server or not.
    ensure_font(waiting._printer(), font)
    waiting.tick()
    assert simulated_printer("offline").label_count == 1
    assert simulated_printer("offline").downloads == {font.path: 1}

    # A font neither the printer nor the server has: reported as not printed, never printed.
    api = ApiClient(stack.url, station)
    api.login(user, PASSWORD)
    lost = service("lost", api)
    lost.queue.label_pulled(2, label.replace(font.path, "E:NH000000.TTF"))
    lost.tick()
    (row,) = lost.queue.labels(("failed", "acked"))
    assert row["printed"] == 0 and "E:NH000000.TTF" in row["printer_reason"]
    assert simulated_printer("lost").label_count == 0
    reset_simulated_printers()
