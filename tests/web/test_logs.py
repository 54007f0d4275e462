"""web/logs.py: JSON lines with role and request id, text on a terminal, safe request ids."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from flask import request_finished

from web import logs

ROOT = Path(__file__).resolve().parents[2]


def _capture(kind: str = "json"):
    """A logger whose records go through the product's formatter and filter into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(kind))
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"test.logs.{kind}")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    return logger, out


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_the_contract_fields_in_utc():
    logger, out = _capture()
    logger.warning("printer %s is %s (%s)", "tcp://p1:9100", "offline", "용지 없음")
    assert "용지 없음" in out.getvalue()  # UTF-8, not \u escapes: a grep for it finds the line
    line, = _lines(out)
    assert list(line)[:6] == ["time", "level", "logger", "role", "request_id", "message"]
    assert line["level"] == "WARNING" and line["logger"] == "test.logs.json"
    assert line["message"] == "printer tcp://p1:9100 is offline (용지 없음)"
    assert line["role"] == logs.role()
    assert line["request_id"] is None
    assert line["time"].endswith("Z")
    at = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert at.tzinfo is not None and at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - at).total_seconds()) < 5


def test_an_exception_comes_with_its_traceback_and_extra_fields_come_along():
    logger, out = _capture()
    try:
        raise ValueError("bad label data")
    except ValueError:
        logger.exception("delivery failed", extra={"job": 42})
    line, = _lines(out)
    assert line["level"] == "ERROR" and line["job"] == 42
    assert "Traceback" in line["exc_info"] and "ValueError: bad label data" in line["exc_info"]


def test_the_filter_stamps_the_current_request_id_and_keeps_an_explicit_one():
    logger, out = _capture()
    with logs.request_id_bound("rq-filter-1"):
        logger.info("inside")
        logger.info("for another request's row", extra={"request_id": "rq-row-7"})
    logger.info("outside")
    assert [(x["message"], x["request_id"]) for x in _lines(out)] == [
        ("inside", "rq-filter-1"), ("for another request's row", "rq-row-7"), ("outside", None)]


def test_text_lines_stay_readable_and_name_the_request_when_there_is_one():
    logger, out = _capture("text")
    with logs.request_id_bound("rq-text-1"):
        logger.info("label job 5 printed on tcp://p1:9100")
    logger.info("no request")
    first, second = out.getvalue().splitlines()
    assert (f" INFO {logs.role()} test.logs.text: label job 5 printed on tcp://p1:9100 "
            "[request rq-text-1]") in first
    assert second.endswith("test.logs.text: no request") and not second.startswith("{")


def test_auto_is_text_on_a_terminal_and_json_otherwise(tmp_path):
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert logs.choose_format("auto", tty) == "text"
            assert logs.choose_format(None, tty) == "text"
            assert logs.choose_format("json", tty) == "json"  # the setting wins
    finally:
        os.close(master)
        os.close(slave)
    with open(tmp_path / "out.log", "w") as file:
        assert logs.choose_format("auto", file) == "json"
        assert logs.choose_format("TEXT", file) == "text"


def _a_new_process(stderr, env: dict) -> subprocess.CompletedProcess:
    """Create the app in a new process whose stderr is ``stderr``, and log one warning."""
    code = ("from web import create_app; create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://'});"
            "import logging; logging.getLogger('probe').warning('hello')")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, stderr=stderr,
                          stdout=subprocess.DEVNULL, text=True, timeout=60, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_a_process_writes_json_into_a_pipe_and_text_onto_a_terminal(tmp_path):
    """What systemd or a container (a pipe) and `neurohub up` on a terminal each get."""
    env = {"NEUROHUB_DATA_DIR": str(tmp_path), "LOG_FORMAT": "", "LOG_LEVEL": "INFO"}
    piped = _a_new_process(subprocess.PIPE, env).stderr
    line = json.loads(piped.splitlines()[-1])
    assert (line["logger"], line["message"], line["role"]) == ("probe", "hello", "cli")
    master, slave = os.openpty()
    try:
        _a_new_process(slave, env)
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "WARNING cli probe: hello" in text and "{" not in text


def test_a_bad_log_format_or_level_is_a_configuration_error(tmp_path):
    from web.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="LOG_FORMAT='xml' must be json, text or auto"):
        load_config(environ={"LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="LOG_LEVEL='verbose' must be DEBUG, INFO, WARNING"):
        load_config(environ={"LOG_LEVEL": "verbose"})
    cfg = load_config(environ={"LOG_LEVEL": "warning", "LOG_FORMAT": " JSON",
                               "NEUROHUB_DATA_DIR": str(tmp_path)})
    assert (cfg["LOG_LEVEL"], cfg["LOG_FORMAT"]) == ("WARNING", "json")


@pytest.mark.parametrize("value,kept", [
    ("rq-42", True), ("3f2b6c0e-8a51-4d1c-9a43-1c2d3e4f5a6b", True), ("st01.20261206:0001", True),
    ("a" * 64, True), ("a" * 65, False), ("", False), (None, False), ("two words", False),
    ('x"}, "level": "CRITICAL', False), ("line\nbreak", False), ("<script>", False),
    ("é-accent", False)])
def test_only_a_safe_bounded_request_id_is_kept(value, kept):
    got = logs.valid_request_id(value)
    if kept:
        assert got == value
    else:
        assert got != value and len(got) == 32 and int(got, 16) >= 0  # a new uuid4 hex


@pytest.mark.parametrize("argv,role", [
    (["/opt/neurohub/bin/gunicorn", "-c", "python:web.gunicorn_conf", "web:create_app()"], "web"),
    (["/x/gunicorn/__main__.py", "-w", "2"], "web"),
    (["/x/celery/__main__.py", "-A", "workers.main", "worker", "-Q", "completions,default"],
     "worker"),
    (["/opt/neurohub/bin/celery", "-A", "workers.main", "worker", "-Q", "printing,io"],
     "worker-io"),
    (["celery", "-A", "workers.main", "worker", "--queues=printing"], "worker-io"),
    (["celery", "-A", "workers.main", "worker", "-Qcompletions,default,printing"], "worker"),
    (["celery", "-A", "workers.main", "worker"], "worker"),
    (["celery", "-A", "workers.main", "beat", "-l", "INFO"], "beat"),
    (["/opt/neurohub/bin/neurohub", "relay"], "relay"),
    (["/x/web/cli/__main__.py", "relay", "--once"], "relay"),
    (["/opt/neurohub/bin/neurohub", "up"], "cli"),
    (["/opt/neurohub/bin/neurohub", "backup"], "cli"),
    ([], "cli")])
def test_the_role_comes_from_the_command_line(argv, role):
    assert logs.guess_role(argv) == role


def test_a_bad_request_id_header_is_replaced_and_a_good_one_echoed(app):
    client = app.test_client()
    good = client.get("/healthz", headers={"X-Request-ID": "st-01.req:77"})
    assert good.headers["X-Request-ID"] == "st-01.req:77"
    for bad in ("x" * 65, "bad id", 'q"uote'):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert got != bad and len(got) == 32
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32 and made != client.get("/healthz").headers["X-Request-ID"]


def test_every_line_a_request_logs_carries_its_id_and_none_leaks_past_it(app):
    logger, out = _capture()

    def log_inside(sender, response, **_):
        logger.info("inside %s", response.status_code)
    request_finished.connect(log_inside, app)
    try:
        app.test_client().get("/healthz", headers={"X-Request-ID": "rq-inside-1"})
    finally:
        request_finished.disconnect(log_inside, app)
    assert logs.current_request_id() is None  # unbound at the request's teardown
    assert [(x["message"], x["request_id"]) for x in _lines(out)] == [("inside 200",
                                                                       "rq-inside-1")]


def test_gunicorn_error_and_access_logs_use_the_json_formatter(monkeypatch):
    from gunicorn.config import Config
    monkeypatch.setenv("LOG_FORMAT", "json")
    cfg = Config()
    cfg.set("accesslog", "-")
    glog = logs.gunicorn_logger_class()(cfg)
    for log in (glog.error_log, glog.access_log):
        handler = glog._get_gunicorn_handler(log)
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert any(isinstance(f, logs.ContextFilter) for f in handler.filters)
    monkeypatch.setenv("LOG_FORMAT", "text")
    glog.setup(cfg)  # what a reload does: gunicorn's own format again, not doubled
    handler = glog._get_gunicorn_handler(glog.access_log)
    assert not isinstance(handler.formatter, logs.JsonFormatter)
    assert len(glog.access_log.handlers) == 1
