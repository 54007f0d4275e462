"""Helpers shared by the HTTP API contract tests (problem+json checks, row counts, threads)."""
from __future__ import annotations

import threading

from sqlalchemy import text

PROBLEM = "application/problem+json"
WRITE_TABLES = ("completions", "outbox_messages", "audit_events")


def assert_problem(resp, status: int, field: str | None = None) -> dict:
    """The response is an RFC 9457 problem with this status (and names ``field`` if given)."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == PROBLEM, resp.headers.get("Content-Type")
    body = resp.get_json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    if field is not None:
        fields = [e.get("field") for e in body.get("errors") or []]
        assert field in fields, f"expected errors[].field {field!r}, got {fields}"
    return body


def row_counts(db) -> dict[str, int]:
    """Row counts of the tables a write request touches (read in a fresh statement)."""
    out = {t: db.session.execute(text(f"select count(*) from {t}")).scalar_one()
           for t in WRITE_TABLES}
    db.session.rollback()
    return out


def run_concurrently(n: int, fn) -> list:
    """Run ``fn(i)`` in ``n`` threads released together by a barrier; returns the results."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def worker(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request thread hung"
    assert not errors, errors
    return results

