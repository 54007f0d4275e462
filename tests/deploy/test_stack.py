"""The on-prem compose stack for real, on podman (issue #15): image built from a debootstrap
base, `docker-compose up`, then through nginx over HTTPS 300 completions from 8 concurrent
clients while one API container is stopped and started again and the Redis container restarted.
A worker whose process dies is started again by the restart policy.
Clients retry with the same Idempotency-Key, as the station does; no completion may fail, each is
accepted exactly once, and its label prints once on the printer simulator container. Then
`down` and `up`: the data is still there. Figures go to bench/results/deploy_stack.json."""
from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests

from tests.deploy.stack import ROOT, Stack, build_images, podman, podman_env
from tests.support.procs import wait_until

pytestmark = pytest.mark.deploy

CLIENTS, LOTS, UNITS = 8, 6, 50           # 300 unit completions
AOF_LOTS = 10                             # lots whose tasks wait in Redis across its restart
PAUSE = 1.2                               # seconds between a client's completions (a station)
ADMIN = ("stack-admin", "stack-admin-password-0123")
ROUTING = [{"step": "FCT", "name": "Functional test", "label_template": "unit",
            "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]
SERIAL_RE = re.compile(rb"\^FD\(21\)([A-Za-z0-9.-]+)\(10\)")  # the unit template's Data Matrix


class Api:
    """The stack's API through nginx (HTTPS, its self-signed certificate accepted)."""

    def __init__(self, url: str):
        self.url, self.s = url, requests.Session()
        self.s.verify = False
        self.headers: dict = {}

    def call(self, method: str, path: str, **kw) -> requests.Response:
        """One request; verify=False again per call (REQUESTS_CA_BUNDLE would win otherwise)."""
        return self.s.request(method, self.url + path, headers={**self.headers, **kw.pop(
            "headers", {})}, verify=False, timeout=30, **kw)

    def login(self, user: str, password: str) -> None:
        r = self.call("POST", "/api/v1/auth/token", json={"username": user, "password": password})
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}


def ready(url: str) -> bool:
    """/readyz through nginx answers 200."""
    try:
        return requests.get(url + "/readyz", verify=False, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def sql(stack: Stack, query: str) -> str:
    """One value from the stack's database (psql in the postgres container)."""
    return podman("exec", stack.container("postgres"), "psql", "-U", "neurohub", "-d", "neurohub",
                  "-tAc", query).stdout.strip()


def label_state(stack: Stack) -> str:
    """Where the labels stand, for a failure message: jobs by state, their outbox messages, and
    the printing worker's last log lines."""
    jobs = sql(stack, "SELECT string_agg(state || '=' || n, ' ') FROM (SELECT state, count(*) n "
                      "FROM label_jobs GROUP BY state) s")
    messages = sql(stack, "SELECT string_agg(dedup_key || ' attempts=' || attempts || ' due_in='"
                          " || round(extract(epoch FROM available_at - now())) || 's', '; ') "
                          "FROM (SELECT * FROM outbox_messages ORDER BY id LIMIT 20) m")
    return f"jobs: {jobs}; outbox: {messages or 'empty'}\n{stack.logs('worker', 'relay')}"


def station_client(api: Api, work: queue.Queue, results: dict, stats: dict, lock) -> None:
    """A station: each completion until it is 202, retrying with the same key."""
    while True:
        try:
            lot, serial = work.get_nowait()
        except queue.Empty:
            return
        key, t0 = uuid.uuid4().hex, time.monotonic()
        body = {"lot_no": lot, "step": "FCT", "station": "ST-S1", "unit_serial": serial,
                "measurements": {"voltage": 3.3}}
        for attempt in range(40):
            try:
                r = api.call("POST", "/api/v1/completions", json=body,
                             headers={"Idempotency-Key": key})
                code = r.status_code
            except requests.RequestException as exc:
                code = type(exc).__name__
            with lock:
                stats["requests"] += 1
                if code != 202:
                    stats["not_202"].append(code)
            if code == 202:
                with lock:
                    results[serial] = r.json()["id"]
                    stats["latency"].append(time.monotonic() - t0)
                break
            time.sleep(0.5)
        else:
            with lock:
                stats["failed"].append(serial)
        time.sleep(PAUSE)


def disrupt(stack: Stack, done: callable, events: list) -> None:
    """Stop api1 and start it again, then restart Redis, while the clients post."""
    def at(n):
        wait_until(lambda: done() >= n, 300, 0.1, f"{n} completions")

    def event(what, action):
        t = time.monotonic()
        action()
        events.append((what, round(time.monotonic() - t, 1), done()))
    at(30)
    event("api1 stopped (SIGTERM)", lambda: stack.compose("stop", "api1"))
    at(90)
    stack.pump.forget(stack.container("api1"))
    event("api1 started", lambda: stack.compose("start", "api1"))
    at(150)
    stack.pump.forget(stack.container("redis"))
    event("redis restarted", lambda: stack.compose("restart", "redis"))
    event("api1 healthy", lambda: wait_until(lambda: "healthy" in podman(
        "ps", "--filter", f"name={stack.container('api1')}", "--format", "{{.Status}}").stdout,
        120, 0.5, "api1"))


def self_watch_exits(stack: Stack, service: str) -> int:
    """How many times a worker container's log says it stopped itself (exit 70)."""
    r = podman("logs", stack.container(service), check=False)
    return (r.stdout + r.stderr).count("stopping this worker (exit 70)")


STOP_ORDER = ("nginx", "api1", "api2", "flower", "worker", "worker-io", "relay", "beat",
              "printer-sim", "prometheus", "redis", "postgres")


def stop_each(stack: Stack) -> tuple[dict, dict]:
    """SIGTERM to every container in turn, dependents first (as `down` does), with the compose
    file's stop_grace_period (30 s): seconds to exit and exit code; the last log lines of any
    that had to be killed (137)."""
    out, killed = {}, {}
    for service in STOP_ORDER:
        name = stack.container(service)
        t = time.monotonic()
        stop = subprocess.Popen(["podman", "stop", "-t", "30", name], env=podman_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            stop.wait(27)
        except subprocess.TimeoutExpired:
            if service.startswith("worker"):
                # Still stopping near the end of its grace: SIGUSR2 makes the worker write
                # every thread's stack (faulthandler, workers/signals.py), so a failure shows
                # where it waits.
                podman("kill", "--signal", "USR2", name, check=False)
        assert stop.wait(60) == 0, stop.stderr.read()
        state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
        out[service] = (round(time.monotonic() - t, 1), state["ExitCode"])
        if state["ExitCode"] == 137:
            logs = podman("logs", "--tail", "120", name, check=False)
            killed[service] = (logs.stdout + logs.stderr)[-8000:]
    return out, killed


@pytest.mark.timeout(900)  # a cold image build alone takes 2-3 minutes
def test_onprem_stack(tmp_path):
    figures: dict = {}
    t = time.monotonic()
    built = build_images("stack")
    figures["build"] = {k: v for k, v in built.items() if k != "images"}
    figures["build"]["total_seconds"] = round(time.monotonic() - t, 1)
    assert built["app_size_bytes"] < 250e6, built["app_size_bytes"]  # issue #15: < 250 MB
    stack = Stack(tmp_path, built["images"], f"nhst{uuid.uuid4().hex[:6]}")
    stack.service.start()
    stack.pump.start()
    try:
        t = time.monotonic()
        stack.compose("up", "-d")
        wait_until(lambda: ready(stack.url), 300, 1, "the stack to be ready through nginx")
        figures["up_to_ready_seconds"] = round(time.monotonic() - t, 1)
        podman("exec", stack.container("api1"), "neurohub", "create-user", ADMIN[0], "--role",
               "admin", "--password", ADMIN[1])
        _check_edge(stack)
        _load_with_faults(stack, figures)
        _a_worker_that_dies_is_restarted(stack, figures)
        _queued_tasks_survive_a_redis_restart(stack, figures)
        t = time.monotonic()
        stack.compose("down")
        stack.pump.forget_all()
        stack.compose("up", "-d")
        wait_until(lambda: ready(stack.url), 300, 1, "the stack to be ready again")
        figures["down_up_to_ready_seconds"] = round(time.monotonic() - t, 1)
        assert sql(stack, "SELECT count(*) FROM completions WHERE status = 'accepted'") == \
            str(LOTS * UNITS + 2 * AOF_LOTS)
        api = Api(stack.url)
        api.login(*ADMIN)
        assert api.call("GET", "/api/v1/products/NH-STACK").status_code == 200
        assert "SN-STK-0-000" in api.call("GET", f"/api/v1/lots/{figures['first_lot']}/dhr").text
        # How often a worker stopped itself for taking no work (workers/self_watch.py): the
        # stack recovers either way, the figure says whether it had to.
        figures["self_watch_exits"] = {w: self_watch_exits(stack, w)
                                       for w in ("worker", "worker-io")}
        figures["sigterm_stop"], killed = stop_each(stack)
        if killed:  # every role stops on SIGTERM (tini forwards it), none killed
            pytest.fail("killed after the SIGTERM grace:\n" + "\n".join(
                f"--- {service} ---\n{logs}" for service, logs in killed.items()))
    except BaseException:
        print(stack.logs("nginx", "api1", "api2", "worker", "worker-io", "relay", "redis"))
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)
        stack.pump.stop()
        stack.service.stop()
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "deploy_stack.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))


def _check_edge(stack: Stack) -> None:
    """What nginx lets in: Flower behind auth, never the metrics; plain HTTP redirected."""
    def get(path, **kw):
        return requests.get(stack.url + path, verify=False, timeout=10, allow_redirects=False, **kw)
    assert get("/flower/").status_code == 401
    # People log in with their NeuroHub account (nginx asks the API); Flower's own credential
    # (FLOWER_BASIC_AUTH) is what nginx sends on, never a login.
    assert get("/flower/", auth=ADMIN).status_code == 200
    assert get("/flower/", auth=("ops", "stack-test-flower")).status_code == 401
    for path in ("/metrics", "/flower/metrics", "/flower/healthcheck"):
        assert get(path).status_code == 404, path
    r = requests.get(f"http://127.0.0.1:{stack.http_port}/readyz", allow_redirects=False,
                     timeout=10)
    assert r.status_code == 301 and r.headers["Location"].startswith("https://")


def queued(stack: Stack, queue_name: str) -> int:
    """Messages waiting in a Redis list (the broker's queue), from inside the redis container."""
    out = podman("exec", stack.container("redis"), "redis-cli", "llen", queue_name).stdout
    return int(out.strip() or 0)


def _a_worker_that_dies_is_restarted(stack: Stack, figures: dict) -> None:
    """A worker whose process ends, as the self-watch ends one that takes no work (exit 70) or as
    a crash does: compose's restart policy starts it again with nobody acting, and a canary comes
    through its queue again (only this worker consumes `completions`)."""
    name = stack.container("worker")

    def restarts() -> int:
        return int(podman("inspect", "--format", "{{.RestartCount}}", name).stdout.strip())
    before, since, t = restarts(), sql(stack, "SELECT now()"), time.monotonic()
    # Celery's main process is tini's only child; tini then exits with it (137).
    podman("exec", name, "sh", "-c", "kill -KILL $(cat /proc/1/task/1/children)")
    wait_until(lambda: restarts() > before, 60, 0.5, "compose to restart the worker")
    stack.pump.forget(name)  # a restarted container begins a new start period
    wait_until(lambda: sql(stack, "SELECT count(*) FROM periodic_runs WHERE name = "
                                  "'workers.canary:completions' AND last_success_at > "
                                  f"'{since}'::timestamptz") == "1", 120, 1,
               lambda: "a canary through the restarted worker\n" + stack.logs("worker"))
    figures["worker_killed_to_canary_seconds"] = round(time.monotonic() - t, 1)


def _queued_tasks_survive_a_redis_restart(stack: Stack, figures: dict) -> None:
    """Worker stopped, tasks wait in Redis; Redis restarted: the same tasks still wait (AOF),
    and the worker decides them once it is back."""
    stack.compose("stop", "worker")
    api = Api(stack.url)
    api.login(*ADMIN)
    for i in range(AOF_LOTS):  # one task per lot (the relay coalesces a lot's completions)
        serials = [f"SN-AOF-{i}-{j}" for j in range(2)]
        lot = api.call("POST", "/api/v1/lots", json={"product": "NH-STACK", "quantity": 2,
                                                     "serials": serials})
        assert lot.status_code == 201, lot.text
        for serial in serials:
            r = api.call("POST", "/api/v1/completions", headers={"Idempotency-Key": serial},
                         json={"lot_no": lot.json()["lot_no"], "step": "FCT", "station": "ST-S1",
                               "unit_serial": serial, "measurements": {"voltage": 3.3}})
            assert r.status_code == 202, r.text
    wait_until(lambda: queued(stack, "completions") >= AOF_LOTS, 60, 0.5, "tasks queued in Redis")
    time.sleep(1)  # past appendfsync everysec: what a crash could lose, a restart must not
    before = queued(stack, "completions")
    stack.pump.forget(stack.container("redis"))
    stack.compose("restart", "redis")
    wait_until(lambda: podman("exec", stack.container("redis"), "redis-cli", "ping",
                              check=False).stdout.strip() == "PONG", 60, 0.5, "redis back")
    after = queued(stack, "completions")
    figures["redis_restart_queued_tasks"] = {"before": before, "after": after}
    assert after == before
    stack.compose("start", "worker")
    total = LOTS * UNITS + 2 * AOF_LOTS
    wait_until(lambda: sql(stack, "SELECT count(*) FROM completions WHERE status = 'accepted'")
               == str(total), 300, 2, "the queued completions to be decided")


def _load_with_faults(stack: Stack, figures: dict) -> None:
    api = Api(stack.url)
    api.login(*ADMIN)
    r = api.call("POST", "/api/v1/products", json={"code": "NH-STACK", "name": "Stack test",
                                                   "routing": ROUTING})
    assert r.status_code == 201, r.text
    r = api.call("POST", "/api/v1/stations", json={"code": "ST-S1", "name": "Stack station",
                                                   "steps": ["FCT"],
                                                   "printer_uri": "tcp://printer-sim:9100"})
    assert r.status_code == 201, r.text
    work: queue.Queue = queue.Queue()
    serials = []
    for i in range(LOTS):
        units = [f"SN-STK-{i}-{j:03d}" for j in range(UNITS)]
        r = api.call("POST", "/api/v1/lots", json={"product": "NH-STACK", "quantity": UNITS,
                                                   "serials": units})
        assert r.status_code == 201, r.text
        serials += units
        figures.setdefault("first_lot", r.json()["lot_no"])
        for u in units:
            work.put((r.json()["lot_no"], u))
    results: dict = {}
    stats = {"requests": 0, "not_202": [], "failed": [], "latency": []}
    lock, events = threading.Lock(), []
    clients = []
    for _ in range(CLIENTS):  # one login for all: LOGIN_RATE_LIMIT is per account
        station = Api(stack.url)
        station.headers = dict(api.headers)
        clients.append(threading.Thread(target=station_client, args=(station, work, results,
                                                                     stats, lock)))
    fault = threading.Thread(target=disrupt, args=(stack, lambda: len(results), events))
    t = time.monotonic()
    fault.start()
    for c in clients:
        c.start()
    for c in clients:
        c.join(900)
    fault.join(300)
    lat = sorted(stats["latency"])
    figures["load"] = {"completions": len(results), "seconds": round(time.monotonic() - t, 1),
                       "http_requests": stats["requests"], "non_202_answers": stats["not_202"],
                       "failed_completions": stats["failed"], "events": events,
                       "completion_p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1)}
    assert not stats["failed"] and len(results) == LOTS * UNITS
    assert len(events) == 4, events
    assert all(n < LOTS * UNITS for _, _, n in events[:3]), events  # all during the load
    # Every completion decided and accepted exactly once, one label each, printed once.
    wait_until(lambda: sql(stack, "SELECT count(*) FROM completions WHERE status = 'accepted'")
               == str(LOTS * UNITS), 300, 2, "every completion to be accepted")
    assert sql(stack, "SELECT count(*) FROM completions") == str(LOTS * UNITS)
    wait_until(lambda: sql(stack, "SELECT count(*) FROM label_jobs WHERE state = 'printed'")
               == str(LOTS * UNITS), 300, 2, lambda: "every label to print: " + label_state(stack))
    assert sql(stack, "SELECT count(*) FROM label_jobs") == str(LOTS * UNITS)
    zpl = podman("exec", stack.container("printer-sim"), "sh", "-c",
                 "cat /var/lib/neurohub/printed-labels/*.zpl").stdout.encode()
    printed = [m.decode() for m in SERIAL_RE.findall(zpl)]
    assert sorted(printed) == sorted(serials)  # each serial's label printed exactly once
    figures["labels_printed"] = len(printed)
