"""The overview's figures (web.services.overview) on real completions, and their query plans."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from web.models import utcnow
from web.services import overview


def test_figures_of_a_small_line(app, line, db):
    data = overview.snapshot()
    wip = {p["product"]: p for p in data["wip"]}[line["product"]]
    steps = {s["step"]: s for s in wip["steps"]}
    assert steps["SMT"]["lots"] == 1 and steps["SMT"]["held"] == 1  # the held lot, at SMT
    assert steps["FCT"]["lots"] == 1  # the lot that passed SMT, its FCT rejected
    assert {"step": "SMT", "completions": 1, "scrap": 0} in data["throughput"]
    fpy = {y["step"]: y for y in data["yield"]}
    assert fpy["SMT"]["yield_pct"] == 100.0 and fpy["FCT"]["yield_pct"] == 0.0
    codes = [r["code"] for r in data["rejects_24h"]]
    assert codes and codes == [r["code"] for r in data["rejects_7d"]]
    assert [h["lot_no"] for h in data["on_hold"]][:1] == [line["held"]] or \
        line["held"] in [h["lot_no"] for h in data["on_hold"]]
    assert {h["lot_no"]: h["reason"] for h in data["on_hold"]}[line["held"]] == "솔더 불량 의심"


def test_first_id_since_is_the_window_start(app, line, db):
    ids = db.session.execute(text("SELECT id, received_at FROM completions ORDER BY id")).all()
    assert overview.first_id_since(ids[0].received_at) == ids[0].id
    assert overview.first_id_since(ids[-1].received_at) == ids[-1].id
    assert overview.first_id_since(utcnow() + timedelta(minutes=1)) == ids[-1].id + 1
    assert overview.first_id_since(utcnow() - timedelta(days=30)) == ids[0].id


def _plan(db, sql: str, **params) -> str:
    rows = db.session.execute(text("EXPLAIN " + sql), params).scalars().all()
    return "\n".join(rows)


def test_completion_windows_are_index_range_scans(app, line, db):
    # An empty test table would be scanned whatever its indexes; forbid that to see the choice.
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = _plan(db, "SELECT step, count(*) FROM completions WHERE status = 'accepted' "
                     "AND id >= :i AND received_at >= now() GROUP BY step", i=1)
    # On 1M completions the planner picks pk_completions or ix_completions_status_id (both
    # ranges over id); never the whole table.
    assert "Seq Scan" not in plan and ("ix_completions_status_id" in plan
                                       or "pk_completions" in plan), plan
    probe = _plan(db, "SELECT id, received_at FROM completions WHERE id >= :m ORDER BY id "
                      "LIMIT 1", m=1)
    assert "pk_completions" in probe, probe
    db.session.rollback()
