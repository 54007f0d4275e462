"""A line that looks like a working day, for the every-page test and the README's screenshots:
two products (one with a Korean name), stations with heartbeats, lots at each step, a reject,
a hold, a completed lot with its labels, a released firmware and named users.

Completions are decided in-process here: this is data for the pages, not a test of the
pipeline (test_browser_pipeline.py is that).
"""
from __future__ import annotations

import io

from tests.support.factories import FCT_ROUTING, SYSTEM
from tests.support.firmwaredata import image

from .conftest import KOREAN_NAME, PASSWORD, post_completion

GOOD = {"voltage": 3.31, "current_ma": 41}
LOW = {"voltage": 3.05, "current_ma": 38}  # under the 3.2 V limit: a reject
STATIONS = [("ST-01", "SMT", "sim://line-1"), ("ST-05", "FCT", "sim://line-1"),
            ("ST-06", "FCT", "sim://line-2"), ("ST-07", "PACK", "sim://line-2")]


def seed(app, client, factory) -> dict:
    """Create the demo line; returns the admin's username and the lot numbers by role."""
    from web.services import firmware, lots, products, stations
    from web.services.completions.processing import process_completion
    with app.app_context():
        products.create_product("HR-200", KOREAN_NAME, FCT_ROUTING, SYSTEM)
        products.create_product("NH-100", "NeuroHub sensor module", FCT_ROUTING, SYSTEM)
        for code, step, printer in STATIONS:
            stations.create_station(code, f"{step} {code[-1]}", [step], printer, SYSTEM)
        for code, queue in (("ST-01", 0), ("ST-05", 0), ("ST-07", 2)):
            stations.heartbeat(code, {"app_version": "1.4.2", "offline_queue": queue})
    admin = factory.user("admin", "admin", PASSWORD)[1]
    factory.user("supervisor", "kim.supervisor", PASSWORD)
    operator = factory.user("operator", "lee.operator", PASSWORD)[1]
    op = _headers(client, operator)
    made = {"done": factory.lot("HR-200", 4), "at_pack": factory.lot("HR-200", 5),
            "rejected": factory.lot("HR-200", 5), "at_fct": factory.lot("NH-100", 10),
            "new": factory.lot("NH-100", 8), "held": factory.lot("HR-200", 3)}
    plan = [("done", "SMT", "ST-01", {}), ("done", "FCT", "ST-05", GOOD),
            ("done", "PACK", "ST-07", {}), ("at_pack", "SMT", "ST-01", {}),
            ("at_pack", "FCT", "ST-06", GOOD), ("rejected", "SMT", "ST-01", {}),
            ("rejected", "FCT", "ST-05", LOW), ("at_fct", "SMT", "ST-01", {}),
            ("held", "SMT", "ST-01", {})]
    ids = [post_completion(client, op, made[lot], step, station,
                           **({"measurements": m} if m else {}))
           for lot, step, station, m in plan]
    with app.app_context():
        for cid in ids:
            process_completion(cid)
        lots.change_state(made["held"], "hold", "솔더 불량 의심 (AOI)", SYSTEM)
        fw = firmware.upload("NH-100", "2.1.0", firmware.measure(io.BytesIO(image(64 * 1024)),
                                                                 "nh100-2.1.0.bin"), SYSTEM,
                             notes="FCT 전압 측정 보정")
        firmware.release(fw.id, SYSTEM)
        _backups()
    return {"admin": admin, **made}


def _backups() -> None:
    """A scheduled backup of hours ago and a manual one of the day before, both verified and
    drilled: rows only (the page lists them; nothing here downloads them)."""
    from datetime import timedelta

    from web.extensions import db
    from web.models import Backup
    from web.models.types import utcnow
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    common = {"state": "done", "engine": "postgresql", "server_version": "16.4",
              "dump_tool": "pg_dump 16.4", "row_counts": {"lots": 6, "completions": 9}}
    for kind, age, size, by in (("manual", 30, 41_877_504, "admin"),
                                ("scheduled", 6, 43_122_688, "system:beat")):
        at = now - timedelta(hours=age)
        db.session.add(Backup(kind=kind, slot=at if kind == "scheduled" else None, size=size,
                              storage_key=f"backups/{at:%Y%m%dT%H%M}.dump", sha256="5e" * 32,
                              requested_by=by, created_at=at, started_at=at,
                              finished_at=at + timedelta(minutes=2),
                              verified_at=at + timedelta(minutes=3),
                              drill_at=at + timedelta(minutes=9), drill_result="passed",
                              **common))
    db.session.commit()


def _headers(client, username: str) -> dict:
    token = client.post("/api/v1/auth/token", json={"username": username,
                                                     "password": PASSWORD}).get_json()
    return {"Authorization": f"Bearer {token['access_token']}"}
