"""The line overview: WIP, today's throughput, first-pass yield, rejects and holds, in SQL.

Every figure is aggregated in the database and reached through existing indexes, so the page
stays fast with millions of completions: a time window over completions becomes an id range
(``first_id_since``: completion ids are assigned in arrival order, and ``received_at`` is set
at insert), read through ``ix_completions_status_id`` (status, id).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, case, func, select, text

from ..extensions import db
from ..models import Completion, Lot, Product
from .plant_time import plant_now

WIP_STATUSES = ("created", "in_process", "on_hold")
_REJECT_REASONS = {
    # One row per reason code of each rejected completion in the id/time window.
    "postgresql": "SELECT r.value->>'code' AS code, count(*) AS n "
                  "FROM completions c CROSS JOIN LATERAL jsonb_array_elements("
                  "CASE jsonb_typeof(c.reasons) WHEN 'array' THEN c.reasons ELSE '[]' END) r "
                  "WHERE c.status = 'rejected' AND c.id >= :since_id AND c.received_at >= :since "
                  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :top",
    "sqlite": "SELECT json_extract(r.value, '$.code') AS code, count(*) AS n "
              "FROM completions c, json_each(c.reasons) r "
              "WHERE c.status = 'rejected' AND c.id >= :since_id AND c.received_at >= :since "
              "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :top",
}


def _conn():
    return db.session.connection()


def first_id_since(since: datetime) -> int:
    """The smallest completion id received at or after ``since`` (past the last id: none).

    A binary search over the primary key: about 20 index probes for a million rows, where a
    filter on ``received_at`` (not indexed: it would slow the hot insert) scans the table.
    """
    conn = _conn()
    lo, hi = conn.execute(select(func.min(Completion.id), func.max(Completion.id))).one()
    if lo is None:
        return 1
    hi += 1
    probe = select(Completion.id, Completion.received_at).where(
        Completion.id >= bindparam("mid")).order_by(Completion.id).limit(1)
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(probe, {"mid": mid}).first()
        if row is None or row.received_at >= since:
            hi = mid
        else:
            lo = row.id + 1
    return lo


def wip() -> list[dict]:
    """Lots and live units waiting at each step, per product (active and held lots)."""
    rows = _conn().execute(
        select(Product.code, Product.name, Lot.current_seq, Lot.current_step,
               func.count().label("lots"), func.sum(Lot.qty_good).label("units"),
               func.sum(case((Lot.status == "on_hold", 1), else_=0)).label("held"))
        .join(Product, Product.id == Lot.product_id)
        .where(Lot.status.in_(WIP_STATUSES))
        .group_by(Product.code, Product.name, Lot.current_seq, Lot.current_step)
        .order_by(Product.code, Lot.current_seq))
    out: dict[str, dict] = {}
    for code, name, _seq, step, lots, units, held in rows:
        entry = out.setdefault(code, {"product": code, "name": name, "steps": []})
        entry["steps"].append({"step": step, "lots": lots, "units": int(units or 0),
                               "held": int(held or 0)})
    return list(out.values())


def throughput(since_id: int, since: datetime) -> list[dict]:
    """Accepted completions per step since ``since`` (busiest step first).

    A completion is one unit (with a serial) or one lot-level pass; ``scrap`` adds the units
    reported scrapped with them.
    """
    rows = _conn().execute(
        select(Completion.step, func.count().label("n"),
               func.coalesce(func.sum(Completion.qty_scrap), 0).label("scrap"))
        .where(Completion.status == "accepted", Completion.id >= since_id,
               Completion.received_at >= since)
        .group_by(Completion.step).order_by(func.count().desc(), Completion.step))
    return [{"step": s, "completions": n, "scrap": int(scrap)} for s, n, scrap in rows]


def first_pass_yield(since_id: int, since: datetime) -> list[dict]:
    """Per step, the share of first attempts (per lot and unit) that were accepted.

    The first attempt is the lowest completion id of each (lot, unit, step) in the window;
    completions still undecided or failed by the system are not attempts.
    """
    judged = (Completion.status.in_(("accepted", "rejected")), Completion.id >= since_id,
              Completion.received_at >= since)
    firsts = (select(func.min(Completion.id).label("id")).where(*judged)
              .group_by(Completion.lot_id, Completion.unit_serial, Completion.step).subquery())
    rows = _conn().execute(
        select(Completion.step, func.count().label("n"),
               func.sum(case((Completion.status == "accepted", 1), else_=0)).label("ok"))
        .join(firsts, firsts.c.id == Completion.id)
        .group_by(Completion.step).order_by(Completion.step))
    return [{"step": s, "attempts": n, "passed": int(ok or 0),
             "yield_pct": round(100.0 * int(ok or 0) / n, 1) if n else None}
            for s, n, ok in rows]


def rejects_by_reason(since_id: int, since: datetime, top: int = 10) -> list[dict]:
    """The most frequent reject reason codes since ``since``."""
    sql = _REJECT_REASONS["sqlite" if db.session.get_bind().dialect.name == "sqlite"
                          else "postgresql"]
    rows = _conn().execute(text(sql), {"since_id": since_id, "since": _bindable(since),
                                       "top": top})
    return [{"code": code or "?", "count": n} for code, n in rows]


def _bindable(t: datetime):
    """A time as the raw SQL above compares it (SQLite stores UTC without an offset)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return t.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ")
    return t


def on_hold(limit: int = 100) -> list[dict]:
    """Lots on hold with their reason, longest held first (ix_lots_status_id)."""
    rows = _conn().execute(
        select(Lot.lot_no, Product.code, Lot.current_step, Lot.hold_reason, Lot.updated_at)
        .join(Product, Product.id == Lot.product_id)
        .where(Lot.status == "on_hold").order_by(Lot.id).limit(limit))
    return [{"lot_no": n, "product": p, "step": s, "reason": r, "since": t}
            for n, p, s, r, t in rows]


def snapshot() -> dict:
    """Everything the overview shows, as of now (today = since the plant's midnight)."""
    now = plant_now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
    week_id = first_id_since(week_ago)
    day_id, today_id = first_id_since(day_ago), first_id_since(midnight)
    return {"at": now, "wip": wip(), "throughput": throughput(today_id, midnight),
            # 24 h, not 7 d: a week is ~100k first attempts to group at a million completions
            # (a third of a second); the day answers "how is the line doing" just as well.
            "yield": first_pass_yield(day_id, day_ago),
            "rejects_24h": rejects_by_reason(day_id, day_ago),
            "rejects_7d": rejects_by_reason(week_id, week_ago), "on_hold": on_hold()}
