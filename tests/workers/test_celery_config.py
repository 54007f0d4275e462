"""workers.config as the worker sees it: JSON only, no results, acks late, and soft and hard
time limits declared on every task, all ending before the broker would redeliver it."""
from __future__ import annotations

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads, prepare_accept_content

from workers.config import VISIBILITY_TIMEOUT, celery_settings


@pytest.fixture(scope="module")
def celery_app(app):
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    return celery_app


@pytest.fixture(scope="module")
def ours(celery_app) -> dict:
    return {n: t for n, t in celery_app.tasks.items() if not n.startswith("celery.")}


def test_only_json_goes_over_the_broker(celery_app):
    conf = celery_app.conf
    assert (conf.task_serializer, conf.result_serializer, conf.event_serializer) == \
        ("json", "json", "json")
    assert list(conf.accept_content) == ["json"]
    accept = prepare_accept_content(conf.accept_content)  # as the worker's consumer does
    ctype, encoding, body = dumps({"id": 1}, serializer="pickle")
    with pytest.raises(ContentDisallowed):  # a pickled message is refused, never unpickled
        loads(body, ctype, encoding, accept=accept)
    ctype, encoding, body = dumps({"id": 1}, serializer="json")
    assert loads(body, ctype, encoding, accept=accept) == {"id": 1}


def test_no_results_are_stored_and_messages_are_acked_after_the_work(celery_app, ours):
    conf = celery_app.conf
    assert conf.task_ignore_result is True and conf.result_backend is None
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert all(t.acks_late and t.ignore_result for t in ours.values())
    assert all(t.serializer == "json" for t in ours.values())


def test_every_task_declares_a_soft_and_a_hard_time_limit(ours):
    for name, task in ours.items():
        declared = vars(type(task))  # the decorator's, not the app-wide fallback
        assert "soft_time_limit" in declared and "time_limit" in declared, name
        soft, hard = task.soft_time_limit, task.time_limit
        assert 0 < soft < hard < VISIBILITY_TIMEOUT, (name, soft, hard)


def test_the_completion_runs_limits_follow_the_setting(tmp_path):
    from web.config import load_config
    cfg = load_config(overrides={"NEUROHUB_DATA_DIR": str(tmp_path),
                                 "COMPLETIONS_SOFT_TIME_LIMIT": 7})
    limits = celery_settings(cfg)["task_annotations"]["completions.process"]
    assert limits == {"soft_time_limit": 7.0, "time_limit": 17.0}
    assert celery_settings(cfg)["broker_transport_options"]["visibility_timeout"] == \
        VISIBILITY_TIMEOUT


def test_redis_urls_get_the_transport_with_the_reconnect_fix_and_keep_their_scheme(celery_app):
    """workers/redis_transport.py: the consumer's connection is ours, and reads as redis://
    (the logs; Flower's broker page goes by the scheme)."""
    from workers.redis_transport import Transport
    with celery_app.connection_for_read() as conn:
        assert isinstance(conn.transport, Transport)
        assert conn.as_uri().startswith("redis://")
    from kombu import Connection
    assert isinstance(Connection("rediss://127.0.0.1:6380/0").transport, Transport)
