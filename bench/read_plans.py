"""EXPLAIN ANALYZE of every SELECT each read endpoint runs, on the history database.

Used by ``bench/reads.py --explain``: the measured source's app runs in this process (Flask test
client, no HTTP), every SELECT of each request is captured and run again under
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``. Per endpoint: statements, the rows its scans
touched (returned plus filtered out, times loops), shared buffers, the slowest statement's
execution time and any sequential scan of a history table. A figure that grows with the whole
history instead of with what the request returns shows here before it shows in the latency.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HISTORY = ("completions", "label_jobs", "audit_events", "lots", "lot_units")
SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


def _walk(node: dict, out: dict) -> None:
    kind, loops = node.get("Node Type"), node.get("Actual Loops", 1)
    if kind in SCANS:
        out["rows"] += (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                        + node.get("Rows Removed by Index Recheck", 0)) * loops
        if kind == "Seq Scan" and node.get("Relation Name") in HISTORY:
            out["seq_scans"].add(node["Relation Name"])
    for child in node.get("Plans", []):
        _walk(child, out)


def explain_all(src: Path, env: dict, token_login: dict, plan: list) -> dict:
    """{endpoint name: figures} for the (name, spec path, paths) of ``plan``."""
    sys.path.insert(0, str(src))
    from sqlalchemy import event

    from web import create_app
    from web.extensions import db
    app = create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"],
                      "SECRET_KEY": env["SECRET_KEY"],
                      "NEUROHUB_DATA_DIR": env["NEUROHUB_DATA_DIR"]})
    client = app.test_client()
    token = client.post("/api/v1/auth/token", json=token_login).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    seen: list = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    results = {}
    with app.app_context():
        engine = db.engine
        for name, _spec, paths in plan:
            figures = {"statements": 0, "rows": 0, "buffers": 0, "max_exec_ms": 0.0,
                       "seq_scans": set()}
            for path in paths[:5]:
                seen.clear()
                event.listen(engine, "before_cursor_execute", capture)
                try:
                    client.get(path, headers=headers)
                finally:
                    event.remove(engine, "before_cursor_execute", capture)
                per_path = {"rows": 0, "seq_scans": figures["seq_scans"], "buffers": 0}
                with engine.connect() as conn:
                    cur = conn.connection.driver_connection.cursor()
                    for statement, parameters in seen:
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement,
                                    parameters or None)
                        doc = cur.fetchone()[0]
                        doc = (json.loads(doc) if isinstance(doc, str) else doc)[0]
                        _walk(doc["Plan"], per_path)
                        per_path["buffers"] += (doc["Plan"].get("Shared Hit Blocks", 0)
                                                + doc["Plan"].get("Shared Read Blocks", 0))
                        figures["max_exec_ms"] = max(figures["max_exec_ms"],
                                                     doc["Execution Time"])
                    conn.rollback()
                figures["statements"] = max(figures["statements"], len(seen))
                figures["rows"] = max(figures["rows"], per_path["rows"])
                figures["buffers"] = max(figures["buffers"], per_path["buffers"])
            figures["seq_scans"] = sorted(figures["seq_scans"])
            results[name] = figures
        db.engine.dispose()
    return results


def table(results: dict) -> str:
    rows = [("endpoint (EXPLAIN ANALYZE, worst path)", "stmts", "rows scanned", "buffers",
             "max exec ms", "seq scan of history")]
    for name, f in results.items():
        rows.append((name, str(f["statements"]), f"{f['rows']:,}", f"{f['buffers']:,}",
                     f"{f['max_exec_ms']:.2f}", ", ".join(f["seq_scans"]) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
