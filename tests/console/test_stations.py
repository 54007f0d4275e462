"""The stations board: producing, idle, problem and offline, from heartbeats, the printer's
status, recent completions and firmware; refreshed by htmx."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import update

from web.models import Printer
from web.services import stations
from web.services.station_board import _state


def test_board_states(app, console, factory, line, db):
    idle = factory.station(steps=["SMT"], printer_uri="sim://idle")
    jammed = factory.station(steps=["SMT"], printer_uri="sim://jammed")
    gone = factory.station(steps=["PACK"])
    with app.app_context():
        stations.heartbeat(line["station"], {"app_version": "1.4.2", "offline_queue": 3})
        stations.heartbeat(idle, {})
        stations.heartbeat(jammed, {"printer_status": "paper out"})
    db.session.execute(update(Printer).where(Printer.uri == "sim://jammed").values(
        status="paper_out", status_reasons=["paper out"]))
    db.session.commit()
    client = console("operator")
    page = client.get("/console/stations").get_data(as_text=True)
    assert 'hx-get="/console/stations/live"' in page
    cards = client.get("/console/stations/live").get_data(as_text=True)

    def card(code):
        return cards.split(f'id="station-{code}"')[1].split("</article>")[0]
    assert 'data-state="producing"' in card(line["station"])
    assert "1.4.2" in card(line["station"]) and ">3<" in card(line["station"])
    assert 'data-state="idle"' in card(idle)
    assert 'data-state="problem"' in card(jammed) and "printer:paper_out" in card(jammed)
    assert 'data-state="offline"' in card(gone)


def test_unverified_firmware_and_climbing_rejects_are_problems(app, db):
    fresh = timedelta(seconds=5)
    ok = SimpleNamespace(status="ok")
    quiet = {"accepted": 0, "rejected": 0, "last_ok": None}
    with app.app_context():
        assert _state(fresh, ok, quiet, [{"version": "2.0.0", "state": "pending"}]) == (
            "problem", ["firmware:2.0.0:pending"])
        assert _state(fresh, ok, {"accepted": 5, "rejected": 4, "last_ok": None}, [])[0] \
            == "problem"
        assert _state(fresh, ok, {"accepted": 50, "rejected": 3, "last_ok": None}, [])[0] \
            == "idle"  # three rejects in fifty-three completions are not a climb
        assert _state(timedelta(hours=1), ok, quiet, [])[0] == "offline"
