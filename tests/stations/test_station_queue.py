"""The offline queue: committed before sending, survives kill -9, drains in order with its keys."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys


from stations.api_client import ApiError, NotLoggedIn, Offline
from stations.queue import CompletionQueue
from stations.sync import Syncer
from tests.support.procs import ROOT, service_env

BODY = {"lot_no": "LOT-1", "step": "FCT", "station": "ST-05", "measurements": {"v": 3.3}}

WRITER = r"""
import sys
from stations.queue import CompletionQueue
q = CompletionQueue(sys.argv[1])
i = 0
while True:
    i += 1
    e = q.enqueue({"lot_no": "LOT-K", "step": "FCT", "station": "ST-05", "n": i}, "op")
    print(e.seq, e.key, flush=True)   # printed only after the commit returned
"""


def test_enqueue_is_committed_and_visible_to_another_connection(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    e = q.enqueue(BODY, "op-1")
    other = sqlite3.connect(tmp_path / "q.sqlite3")
    row = other.execute("SELECT key, operator, state, body FROM completions").fetchone()
    assert row[:3] == (e.key, "op-1", "pending") and len(e.key) == 36
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert q._db.conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other.close()
    q.close()


def test_fifo_states_and_counts(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    a, b, c = (q.enqueue(dict(BODY, n=i), "op") for i in range(3))
    assert q.head().seq == a.seq and q.pending_count() == 3
    q.mark_sent(a.seq, 101)
    assert q.head().seq == b.seq and [e.seq for e in q.undecided()] == [a.seq]
    q.mark_decided(a.seq, "rejected", [{"code": "out_of_spec", "detail": "v"}])
    q.mark_invalid(b.seq, "422 lot_no: bad")
    assert q.counts() == {"rejected": 1, "invalid": 1, "pending": 1}
    assert [e.seq for e in q.unseen()] == [a.seq, b.seq]
    q.mark_seen(a.seq)
    assert [e.seq for e in q.unseen()] == [b.seq]
    assert q.get(a.seq).reasons[0]["code"] == "out_of_spec"
    assert q.head().seq == c.seq
    q.close()


def test_kill_9_loses_nothing_that_was_reported_queued(tmp_path):
    path = tmp_path / "q.sqlite3"
    reported = []
    for round_ in range(3):  # kill the writer at a different moment each round
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT,
                                env=service_env(), stdout=subprocess.PIPE, text=True)
        target = 40 + 25 * round_
        lines = []
        while len(lines) < target:
            line = proc.stdout.readline()
            assert line, "writer died"
            lines.append(line.split())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        reported += [(int(s), k) for s, k in lines]
    q = CompletionQueue(path)
    stored = [(e.seq, e.key) for e in q.all()]
    assert set(reported) <= set(stored), "a completion reported as queued was lost"
    assert [s for s, _ in stored] == sorted(s for s, _ in stored)
    assert len({k for _, k in stored}) == len(stored)
    assert all(e.state == "pending" for e in q.all())
    assert q.head().seq == stored[0][0]
    q.close()


class FakeApi:
    """Scripted server answers for the Syncer's drain rules."""

    def __init__(self, username="op"):
        self.username = username
        self.posts, self.answers, self.decisions = [], {}, {}
        self.next_id = 1000
        self.heartbeat_bodies = []

    def request_id(self, key):
        return f"ST-FAKE:{key}"

    def post_completion(self, body, key):
        self.posts.append((body["n"], key))
        answer = self.answers.get(body["n"])
        if isinstance(answer, Exception):
            raise answer
        self.next_id += 1
        return {"id": self.next_id, "status": "received"}

    def get_completion(self, cid):
        return self.decisions.get(cid, {"status": "received", "reasons": []})

    def heartbeat(self, **body):
        self.heartbeat_bodies.append(body)
        return {}


def test_drain_order_stops_at_offline_and_resends_same_key(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    entries = [q.enqueue(dict(BODY, n=i), "op") for i in range(5)]
    api = FakeApi()
    api.answers[2] = Offline("connection refused")
    s = Syncer(api, q, heartbeat_s=30)
    s.tick()
    assert [n for n, _ in api.posts] == [0, 1, 2]       # stopped at the first failure
    assert not s.state.online and s.state.pending == 3
    del api.answers[2]
    s.tick()
    assert [n for n, _ in api.posts] == [0, 1, 2, 2, 3, 4]
    assert api.posts[2][1] == api.posts[3][1] == entries[2].key, "a retry reuses the key"
    assert s.state.online and q.pending_count() == 0


def test_permanent_refusal_is_recorded_and_drain_continues(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    for i in range(3):
        q.enqueue(dict(BODY, n=i), "op")
    api = FakeApi()
    api.answers[1] = ApiError(422, "lot_no: unknown lot")
    decided = []
    s = Syncer(api, q)
    s.on_decided = decided.append
    s.tick()
    assert [n for n, _ in api.posts] == [0, 1, 2]
    assert [(e.body["n"], e.state, e.last_error) for e in decided] == [
        (1, "invalid", "lot_no: unknown lot")]


def test_conflict_in_flight_keeps_the_entry_and_order(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    for i in range(2):
        q.enqueue(dict(BODY, n=i), "op")
    api = FakeApi()
    api.answers[0] = ApiError(409, "in flight")
    s = Syncer(api, q)
    s.tick()
    assert [n for n, _ in api.posts] == [0] and q.pending_count() == 2
    assert q.head().attempts == 1 and "409" in q.head().last_error


def test_other_operators_work_waits_for_their_login(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    q.enqueue(dict(BODY, n=0), "alice")
    q.enqueue(dict(BODY, n=1), "bob")
    api = FakeApi(username="bob")
    s = Syncer(api, q)
    s.tick()
    assert api.posts == [] and s.state.waiting_for == "alice"
    api.username = "alice"
    s.tick()
    assert [n for n, _ in api.posts] == [0] and s.state.waiting_for == "bob"


def test_not_logged_in_keeps_everything(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    q.enqueue(dict(BODY, n=0), "op")
    api = FakeApi()
    api.answers[0] = NotLoggedIn()
    s = Syncer(api, q)
    s.tick()
    assert q.pending_count() == 1


def test_decisions_polled_and_heartbeat_every_30_seconds(tmp_path):
    q = CompletionQueue(tmp_path / "q.sqlite3")
    q.enqueue(dict(BODY, n=0), "op")
    api = FakeApi()
    now = [100.0]
    s = Syncer(api, q, heartbeat_s=30, clock=lambda: now[0], printer_status=lambda: "ready")
    decided = []
    s.on_decided = decided.append
    assert s.tick() is True                              # sent, not decided yet
    api.decisions[1001] = {"status": "accepted", "reasons": []}
    now[0] += 0.1
    s.tick()
    assert [e.state for e in decided] == ["accepted"]
    assert len(api.heartbeat_bodies) == 1
    assert api.heartbeat_bodies[0] == {"app_version": "0.1.0", "offline_queue": 0,
                                       "printer_status": "ready"}
    for _ in range(5):                                   # 29 s later: no second heartbeat
        now[0] += 5.8
        s.tick()
    assert len(api.heartbeat_bodies) == 1
    now[0] += 1.5
    s.tick()
    assert len(api.heartbeat_bodies) == 2
    assert s.tick() is False
