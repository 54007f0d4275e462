#!/usr/bin/env python3
"""The admin console's pages against a year of history: p50 / p99 per page, with their targets
(issue 17: the overview < 300 ms, a lot page < 200 ms, a lot search < 200 ms; the rest < 200 ms).

    python bench/history.py build                       # once: nhhist_1000000_20000_1 (cached)
    python bench/console_reads.py --source HEAD         # measure HEAD's console on it

Measured as ``bench/reads.py`` measures the API (its helpers): one gunicorn as ``neurohub up``
runs it on the history database, one keep-alive client logged in to the console with its
cookie (the login form's CSRF token, as a browser sends it), the pages taking turns in rounds;
the CPU of the web workers and their PostgreSQL backends per request. Yardstick in the same run:
the Flask "hello" JSON view under the same gunicorn. Results: a table, and
``bench/results/console-<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import history  # noqa: E402
import measure as instruments  # noqa: E402
from harness import Bench, BenchError, log  # noqa: E402
from reads import (LOGIN, Client, cpu_probe, measure, serve_history, spread,  # noqa: E402
                   table)

TARGETS_MS = {"overview": 300.0}  # by the page name's first word; every other page: 200 ms
DEFAULT_TARGET_MS = 200.0


def target(name: str) -> float:
    """The p99 target of a page."""
    return TARGETS_MS.get(name.split()[0].rstrip(":"), DEFAULT_TARGET_MS)


class ConsoleClient(Client):
    """A ``reads.Client`` that logs in through the console's form and sends its cookie."""

    def __init__(self, base: str):
        super().__init__(base, None)
        self.cookies: dict[str, str] = {}
        status, page = self._request("GET", "/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise BenchError(f"console login page: {status}")
        form = urllib.parse.urlencode({**LOGIN, "csrf_token": token.group(1), "next": ""})
        status, _ = self._request("POST", "/console/login", form,
                                  {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302:
            raise BenchError(f"console login: {status} (302 expected)")
        self.headers = {"Cookie": self._cookie()}

    def _cookie(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _request(self, method: str, path: str, body: str | None = None,
                 headers: dict | None = None) -> tuple[int, str]:
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = self._cookie()
        self.conn.request(method, path, body=body, headers=hdrs)
        resp = self.conn.getresponse()
        text = resp.read().decode(errors="replace")
        for header, value in resp.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        return resp.status, text


def pages(bench: Bench, db: str) -> list[tuple[str, str, list[str]]]:
    """(name, route, concrete paths cycled through) for every measured page."""
    q = lambda sql: [r[0] for r in bench.sql(db, sql)]  # noqa: E731
    big = q("SELECT l.lot_no FROM lots l WHERE l.id = (SELECT lot_id FROM completions "
            "GROUP BY lot_id ORDER BY count(*) DESC LIMIT 1)")[0]
    lots = spread(q("SELECT lot_no FROM lots WHERE id % 97 = 0 ORDER BY id"))
    serials = spread(q("SELECT serial FROM lot_units WHERE id % 991 = 0 ORDER BY id"))
    days = spread(q("SELECT DISTINCT created_at::date::text FROM lots ORDER BY 1"), 20)
    prefixes = sorted({n.rsplit("-", 1)[0] for n in lots})
    L = "/console/lots"
    return [
        ("overview page", "/console/", ["/console/"]),
        ("overview: its refresh", "/console/overview/live", ["/console/overview/live"]),
        ("lot page: biggest lot", L + "/<lot_no>", [f"{L}/{big}"]),
        ("lot page (spread)", L + "/<lot_no>", [f"{L}/{n}" for n in lots]),
        ("lot search: newest", L, [L]),
        ("lot search: lot number prefix", L, [f"{L}?lot={p}" for p in prefixes]),
        ("lot search: serial", L, [f"{L}?serial={s}" for s in serials]),
        ("lot search: product+status", L, [f"{L}?product=NH-300&status=completed",
                                           f"{L}?product=NH-200&status=in_process"]),
        ("lot search: day", L, [f"{L}?date={d}" for d in days]),
        ("lot search: on hold", L, [f"{L}?status=on_hold"]),
        ("stations board", "/console/stations/live", ["/console/stations/live"]),
        ("printers", "/console/printers", ["/console/printers"]),
        ("firmware", "/console/firmware", ["/console/firmware"]),
        ("users", "/console/users", ["/console/users"]),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    history.add_args(p)
    p.add_argument("--source", default="worktree", help="worktree, or a git revision")
    p.add_argument("--requests", type=int, default=100, help="per page")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args()
    db = history.db_name(args)
    bench = Bench(args)
    try:
        head, _, (web, base), (hello, hello_base) = serve_history(bench, db)
        plan = pages(bench, db)
        log(f"{len(plan)} pages, {args.requests} requests each, database {db} at {head}")
        hc = Client(hello_base, None)
        hello_res = measure(hc, [("hello", "/hello", ["/hello"])], args.requests, 1,
                            lambda: instruments.cpu_seconds(hello.tree()))["hello"]
        client = ConsoleClient(base)
        res = measure(client, plan, args.requests, args.rounds, cpu_probe(bench, web, db))
        for c in (hc, client):
            c.close()
        out = {"database": db, "schema": head, "source": bench.results["source"],
               "args": vars(args), "hello": hello_res, "pages": res,
               "targets_ms": {name: target(name) for name in res},
               "loadavg": list(os.getloadavg())}
        print(table(out, "pages", "page", target))
        print(f"load average {out['loadavg'][0]:.1f}")
        results = harness.BENCH / "results"
        results.mkdir(exist_ok=True)
        path = results / f"console-{bench.run_id}.json"
        path.write_text(json.dumps(out, indent=1, default=str))
        log(f"results: {path}")
        return 0 if all(r["p99"] < target(n) and not r["non_200"] for n, r in res.items()) else 1
    except BenchError as exc:
        bench.failed = True
        log(f"ERROR: {exc}")
        return 2
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
