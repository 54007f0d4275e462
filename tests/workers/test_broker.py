"""workers.broker on the real Redis: one producer per publishing block, queue depths, and a
broker that is down never breaks the caller of publish_claimed."""
from __future__ import annotations

import time

import pytest
from celery import Celery

from tests.support.broker import private_queue
from web.services.readiness import ping_broker
from workers.broker import publish_claimed, publisher, queue_depth
from workers.config import celery_settings

QUEUE = "workers-broker-test"


@pytest.fixture()
def broker(app, redis_url):
    """A Celery app with the product's settings whose messages all land on QUEUE, and the ids
    of the messages there (tests/support/broker.py: no other test's worker takes them)."""
    with private_queue(app, redis_url, QUEUE) as (celery_app, published):
        yield celery_app, lambda: sorted(h["id"] for h in published())


def test_a_publishing_block_holds_one_producer_and_gives_it_back(broker):
    celery_app, ids = broker
    with publisher(celery_app) as publish:
        for i in range(3):
            publish("labels.print", [i], "printing", f"probe-{i}")
        assert len(celery_app.producer_pool._dirty) == 1  # one producer for the whole block
    assert len(celery_app.producer_pool._dirty) == 0
    assert queue_depth(celery_app, QUEUE) == 3 and ids() == ["probe-0", "probe-1", "probe-2"]


def test_claimed_messages_go_out_with_their_outbox_key_as_task_id(broker):
    celery_app, ids = broker
    sent = publish_claimed(celery_app, [("labels.print", [7], "printing", "label:7"),
                                        ("labels.print", [8], "printing", "label:8")])
    assert sent == 2 and ids() == ["label-7", "label-8"]
    assert publish_claimed(celery_app, []) == 0


def test_an_unknown_queue_is_empty_and_a_live_broker_answers_a_ping(broker):
    celery_app, _ = broker
    assert queue_depth(celery_app, "no-such-queue-ever") == 0
    ping_broker(celery_app, timeout=2)


def test_a_broker_that_is_down_fails_the_ping_and_leaves_claimed_messages_to_the_relay(
        app, caplog):
    from kombu.exceptions import OperationalError
    down = Celery("down", set_as_current=False)  # the product's settings, a refusing broker
    down.config_from_object(dict(celery_settings(app.config),
                                 broker_url="redis://127.0.0.1:1/0"))
    with pytest.raises(OperationalError):
        ping_broker(down, timeout=1)
    started = time.monotonic()
    assert publish_claimed(down, [("labels.print", [1], "printing", "label:1")]) == 0  # no raise
    assert time.monotonic() - started < 10  # (measured: ~6 s of connection attempts)
    assert "1 claimed message(s) failed" in caplog.text and "the relay will" in caplog.text
