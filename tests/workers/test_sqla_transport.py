"""The embedded broker (kombu's SQLAlchemy transport on a SQLite file, workers/sqla_transport.py):
messages come out in order, once, and are gone from the file when taken; an empty poll waits for
no lock; what the stock transport left behind is cleared."""
from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
from kombu import Connection

from workers.sqla_transport import register


@pytest.fixture()
def broker(tmp_path):
    register()
    path = tmp_path / "broker.sqlite3"
    return path, f"nhsqla+sqlite:///{path}"


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT visible, payload FROM kombu_message").fetchall()


def test_messages_come_out_in_order_and_leave_the_file(broker):
    path, url = broker
    with Connection(url) as conn:
        q = conn.SimpleQueue("jobs")
        for i in range(5):
            q.put({"n": i})
        assert q.qsize() == 5 and len(_rows(path)) == 5
        got = []
        for _ in range(5):
            msg = q.get(timeout=2)
            got.append(msg.payload["n"])
            msg.ack()
        assert got == [0, 1, 2, 3, 4]
        assert _rows(path) == []  # the stock transport kept all five, marked invisible
        with pytest.raises(q.Empty):
            q.get(timeout=0.3)
        q.close()


def test_an_empty_poll_does_not_wait_for_the_write_lock(broker):
    path, url = broker
    with Connection(url) as conn:
        q = conn.SimpleQueue("idle")
        q.put({"warm": 1})
        q.get(timeout=2).ack()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        try:
            started = time.monotonic()
            with pytest.raises(q.Empty):
                q.get(block=False)
            assert time.monotonic() - started < 1.0  # the stock poll took BEGIN IMMEDIATE
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        q.close()


def test_two_consumers_never_take_the_same_message(broker):
    path, url = broker
    n = 300
    with Connection(url) as conn:
        q = conn.SimpleQueue("race")
        for i in range(n):
            q.put({"n": i})
        q.close()
    taken: list[list[int]] = [[], []]

    def consume(out: list[int]) -> None:
        with Connection(url) as conn:
            q = conn.SimpleQueue("race")
            while True:
                try:
                    msg = q.get(timeout=0.5)
                except q.Empty:
                    break
                out.append(msg.payload["n"])
                msg.ack()
            q.close()
    threads = [threading.Thread(target=consume, args=(out,)) for out in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = taken[0] + taken[1]
    assert sorted(everything) == list(range(n))  # each exactly once
    assert taken[0] and taken[1]
    assert _rows(path) == []


def test_delivered_rows_left_by_the_stock_transport_are_cleared_on_open(broker):
    path, url = broker
    with Connection(url) as conn:
        q = conn.SimpleQueue("old")
        q.put({"keep": 1})
        q.close()
    with sqlite3.connect(path) as db:
        qid = db.execute("SELECT id FROM kombu_queue WHERE name = 'old'").fetchone()[0]
        db.executemany("INSERT INTO kombu_message (queue_id, visible, payload, version) "
                       "VALUES (?, 0, ?, 1)", [(qid, f'{{"old": {i}}}') for i in range(50)])
    from workers.sqla_transport import Channel
    Channel._engines.clear()  # a new process: the engine (and its clean-up) is made on open
    with Connection(url) as conn:
        q = conn.SimpleQueue("old")
        msg = q.get(timeout=2)
        assert msg.payload == {"keep": 1}
        msg.ack()
        q.close()
    assert _rows(path) == []


def test_a_forked_child_publishes_on_its_own_connection(broker):
    path, url = broker
    with Connection(url) as conn:
        q = conn.SimpleQueue("forked")
        q.put({"from": "parent"})
        pid = os.fork()
        if pid == 0:  # the child: publish and leave without running the parent's clean-ups
            code = 1
            try:
                with Connection(url) as child:
                    cq = child.SimpleQueue("forked")
                    cq.put({"from": "child"})
                    cq.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        msgs = [q.get(timeout=2) for _ in range(2)]
        assert {m.payload["from"] for m in msgs} == {"parent", "child"}
        for m in msgs:
            m.ack()
        q.close()


def test_a_message_taken_and_not_acknowledged_comes_back_when_the_consumer_closes(broker):
    path, url = broker
    with Connection(url) as conn:
        q = conn.SimpleQueue("unacked")
        q.put({"n": 1})
        assert q.get(timeout=2).payload == {"n": 1}  # a worker stopped before finishing it
        assert _rows(path) == []
        q.close()
    assert [visible for visible, _ in _rows(path)] == [1]
    with Connection(url) as conn:
        q = conn.SimpleQueue("unacked")
        msg = q.get(timeout=2)
        assert msg.payload == {"n": 1}
        msg.ack()
        q.close()
