"""HTTP load generators for the benchmarks (standard library only, 127.0.0.1 targets only).

* ``post_many``: a closed-loop, threaded poster: N requests as fast as ``conns`` connections go,
  each request retried with the same Idempotency-Key on a connection error or a 409/503.
* ``paced``: an open-loop poster at a fixed rate (what ``wrk2 -R`` does): request i is due at
  t0 + i/rate, whatever happened to earlier ones, so a stall shows up as latency of the requests
  queued behind it ("from schedule"), not as a silently lower rate (coordinated omission).

Both use ``http.client`` with one connection per thread and reuse it while the server keeps it
open (gunicorn's sync worker closes it after every response, so in practice each request
reconnects, as with wrk against the same server).
"""
from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RETRY_STATUSES = {409, 503}


def _check_local(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"benchmarks only target this machine, not {parts.hostname!r}")
    return parts.hostname, parts.port or 80, parts.path or "/"


@dataclass
class Outcome:
    """What one logical request ended with."""

    status: int  # HTTP status, or 0 when it never got an answer
    body: dict | None
    attempts: int
    sent: float  # perf_counter() when its (last) attempt was sent
    done: float  # perf_counter() when the answer was read
    due: float | None = None  # paced runs: when it was scheduled


@dataclass
class Run:
    """All outcomes of a load run, in request order."""

    outcomes: list[Outcome]
    started: float  # time.time() of the first send
    started_pc: float  # perf_counter() of the first send
    finished_pc: float
    errors: list[str] = field(default_factory=list)

    def status_mix(self) -> dict[str, int]:
        mix: dict[str, int] = {}
        for o in self.outcomes:
            mix[str(o.status)] = mix.get(str(o.status), 0) + 1
        return dict(sorted(mix.items()))

    def ids(self) -> list[int]:
        return [o.body["id"] for o in self.outcomes
                if o.status == 202 and o.body and "id" in o.body]


def _one(conn_box: list, host: str, port: int, path: str, headers: dict, payload: bytes,
         retries: int, errors: list[str]) -> tuple[int, dict | None, int, float, float]:
    attempts, status, body, sent = 0, 0, None, time.perf_counter()
    while attempts <= retries:
        attempts += 1
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection(host, port, timeout=30)
        conn = conn_box[0]
        sent = time.perf_counter()
        try:
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            if resp.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn_box[0] = None
            if len(errors) < 20:
                errors.append(f"{type(exc).__name__}: {exc}")
            status = 0
            time.sleep(0.05)
            continue
        done = time.perf_counter()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if status in RETRY_STATUSES and attempts <= retries:
            time.sleep(0.2)
            continue
        return status, body, attempts, sent, done
    return status, body, attempts, sent, time.perf_counter()


def post_many(url: str, token: str, bodies: list[dict], keys: list[str], conns: int = 16,
              retries: int = 5) -> Run:
    """POST every body (with its own Idempotency-Key) as fast as ``conns`` connections allow."""
    host, port, path = _check_local(url)
    n = len(bodies)
    outcomes: list[Outcome | None] = [None] * n
    payloads = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    ticket = itertools.count()  # next() on a count is atomic under the GIL
    errors: list[str] = []
    first: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker():
        box = [None]
        while True:
            i = next(ticket)
            if i >= n:
                break
            if not first:
                with lock:
                    if not first:
                        first.append((time.time(), time.perf_counter()))
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                       "Idempotency-Key": keys[i]}
            status, body, attempts, sent, done = _one(box, host, port, path, headers,
                                                      payloads[i], retries, errors)
            outcomes[i] = Outcome(status, body, attempts, sent, done)
        if box[0] is not None:
            box[0].close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter()
    return Run(outcomes, first[0][0], first[0][1], end, errors)  # type: ignore[arg-type]


def paced(url: str, token: str, body_for, key_for, rate: float, seconds: float,
          conns: int = 8) -> Run:
    """POST at a fixed ``rate`` per second for ``seconds`` (open loop, up to ``conns`` in flight)."""
    host, port, path = _check_local(url)
    n = int(rate * seconds)
    outcomes: list[Outcome | None] = [None] * n
    ticket = itertools.count()
    errors: list[str] = []
    t0_pc = time.perf_counter() + 0.2
    t0 = time.time() + 0.2

    def worker():
        box = [None]
        while True:
            i = next(ticket)
            if i >= n:
                break
            due = t0_pc + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            payload = json.dumps(body_for(i), separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                       "Idempotency-Key": key_for(i)}
            status, body, attempts, sent, done = _one(box, host, port, path, headers, payload,
                                                      0, errors)
            outcomes[i] = Outcome(status, body, attempts, sent, done, due)
        if box[0] is not None:
            box[0].close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Run(outcomes, t0, t0_pc, time.perf_counter(), errors)  # type: ignore[arg-type]


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]
