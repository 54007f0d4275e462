"""Times people read are on the plant's clock (PLANT_TIMEZONE) with their offset."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

# 25 hours apart: whatever the hour, their dates differ, and at least one differs from UTC's.
EAST, WEST = "Pacific/Kiritimati", "Pacific/Pago_Pago"


def _record(received, processed):
    completion = {"id": 1, "status": "accepted", "unit_serial": None, "station": "ST-1",
                  "operator": "op", "received_at": received, "processed_at": processed,
                  "reasons": [], "firmware_version": None, "firmware_sha256": None,
                  "measurements": []}
    return {"lot": {"lot_no": "L-1", "product": "NH-100"},
            "steps": [{"step": "FCT", "completions": [completion]}]}


def test_the_dhr_csv_shows_the_plant_clock_with_its_offset(app, monkeypatch):
    from web.services import dhr
    monkeypatch.setitem(app.config, "PLANT_TIMEZONE", "Asia/Seoul")
    with app.app_context():
        text = dhr.to_csv(_record("2026-03-04T17:00:00+00:00", "2026-03-04T17:00:01.5+00:00"))
    row = text.splitlines()[1].split(",")
    assert row[8:10] == ["2026-03-05 02:00:00+09:00", "2026-03-05 02:00:01+09:00"]
    with app.app_context():
        assert dhr.to_csv(_record("2026-03-04T17:00:00+00:00", None)).splitlines()[1] \
            .split(",")[9] == ""


def test_backup_list_shows_the_plant_clock_with_its_offset(app, db, monkeypatch):
    from web.models import Backup
    monkeypatch.setitem(app.config, "PLANT_TIMEZONE", "Asia/Seoul")
    db.session.add(Backup(kind="scheduled", state="done", storage_key="db/x.dump", size=1,
                          finished_at=datetime(2026, 3, 4, 17, 0, tzinfo=timezone.utc)))
    db.session.commit()
    out = app.test_cli_runner().invoke(args=["backup", "list"])
    assert out.exit_code == 0, out.output
    assert "2026-03-05 02:00:00+09:00" in out.output


@pytest.mark.parametrize("what", ["label", "lot"])
def test_label_and_lot_dates_are_the_plant_date(app, factory, monkeypatch, what):
    from web.models import Lot
    from web.services import labels, lots
    lot_no = factory.lot()
    seen = {}
    for zone in (EAST, WEST):
        monkeypatch.setitem(app.config, "PLANT_TIMEZONE", zone)
        with app.app_context():
            lot = app.extensions["sqlalchemy"].session.scalar(
                select(Lot).where(Lot.lot_no == lot_no))
            seen[zone] = (labels.label_data("lot", lot, None)["date"] if what == "label"
                          else lots.lot_day())
        fmt = "%Y-%m-%d" if what == "label" else "%Y%m%d"
        assert seen[zone] == datetime.now(ZoneInfo(zone)).strftime(fmt)
    assert seen[EAST] != seen[WEST]
