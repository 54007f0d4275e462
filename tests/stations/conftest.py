"""Station app tests: Qt offscreen, a REAL server (gunicorn) + Celery worker + outbox relay.

The server processes are started once for this package and stopped after its last test, so they
never linger into other packages' tests. The offline test stops and restarts gunicorn on the same
port. Apps under test are real MainWindows on a per-test data folder.
"""
from __future__ import annotations

import os
import tempfile

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import: no screen on CI
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))

import pytest  # noqa: E402
import requests  # noqa: E402

from tests.conftest import TEST_CONFIG, empty_database  # noqa: E402
from tests.support.live import LiveServer  # noqa: E402
from tests.support.procs import (Proc, celery_worker, relay, service_env, stop_all,  # noqa: E402
                                 wait_until)

PASSWORD = "correct-horse-battery"  # tests.support.factories default
FCT_STEP = {"step": "FCT", "name": "Functional test", "measurements": [
    {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
    {"name": "current_ma", "unit": "mA", "min": 30, "max": 50}]}


class Stack:
    """The running server, worker and relay, plus admin helpers over HTTP."""

    def __init__(self, server: LiveServer, worker: Proc, relay_proc: Proc):
        self.server, self.worker, self.relay = server, worker, relay_proc

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return self.server.url

    def logs(self) -> str:
        """Recent output of every process (for assertion messages)."""
        return "\n".join(f"--- {p.name} ---\n{p.output()}"
                         for p in (self.server.proc, self.worker, self.relay))


@pytest.fixture(scope="package")
def stack(app, pg_database, redis_url, tmp_path_factory):
    """gunicorn + Celery worker + outbox relay on the session database, for this package."""
    log_dir = tmp_path_factory.mktemp("station-stack")
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url,
                      NEUROHUB_DATA_DIR=str(tmp_path_factory.mktemp("server-data")),
                      WEB_WORKERS=2, **TEST_CONFIG)
    # the worker and the relay start while gunicorn does (start-ups are most of this fixture)
    worker = celery_worker(env, log_dir, name="station-worker",
                           queues="completions,default,printing,io").start()
    relay_proc = relay(env, log_dir).start()
    try:
        server = LiveServer(env, log_dir).start()
    except BaseException:
        stop_all(relay_proc, worker)
        raise
    celery_app = app.extensions["celery"]
    wait_until(lambda: celery_app.control.ping(timeout=0.5), 60, message="the worker to answer")
    yield Stack(server, worker, relay_proc)
    stop_all(relay_proc, worker, server.proc)


@pytest.fixture()
def db(app):
    """The parent package's emptied database, retrying the emptying if it deadlocks.

    Here the server, relay and worker keep querying between tests, so deleting every table's
    rows can deadlock with them; a retry always gets through.
    """
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError
    from web.extensions import db as _db
    with app.app_context():
        for attempt in range(10):
            try:
                _db.session.execute(text("SET LOCAL lock_timeout = '5s'"))
                empty_database(_db.session)
                break
            except OperationalError:
                _db.session.rollback()
                if attempt == 9:
                    raise
                time.sleep(0.3)
        yield _db
        _db.session.rollback()
        _db.session.remove()


@pytest.fixture(autouse=True)
def ui_gc(qapp):
    """Cycles collected on the UI thread only, as in the app (stations/threads.MainThreadGC);
    what the test left is collected here, on this thread, before collection is back to normal."""
    import gc

    from stations.threads import MainThreadGC
    guard = MainThreadGC(parent=qapp)
    yield guard
    gc.collect()
    guard.stop()
    guard.deleteLater()


@pytest.fixture(autouse=True)
def _language():
    """Every test starts in English unless it switches; the catalog is global."""
    from stations.i18n import set_language
    set_language("en")
    yield
    set_language("en")


@pytest.fixture()
def hangul_app(qapp):
    """The QApplication with the Hangul-capable font the app uses."""
    from stations.ui import setup_fonts
    setup_fonts(qapp)
    return qapp


@pytest.fixture()
def make_station(stack, hangul_app, qtbot, tmp_path):
    """make_station(code, user=..., **cfg) -> a logged-in MainWindow on its own data folder."""
    from stations.config import StationConfig
    from stations.station import StationContext
    from stations.ui import MainWindow
    windows = []

    def make(code: str, username: str | None = None, password: str = PASSWORD,
             data_dir=None, login: bool = True, show: bool = True, **cfg):
        options = dict(server=stack.url, station=code, scanner_mode="none",
                       data_dir=str(data_dir or tmp_path / f"station-{code}"),
                       heartbeat_s=30.0, label_poll_s=0.3, request_timeout_s=3.0)
        options.update(cfg)
        ctx = StationContext(StationConfig(**options))
        window = MainWindow(ctx)
        windows.append(window)
        if show:
            window.resize(1280, 800)
            window.show()
        if login:
            dialog = window.show_login()
            with qtbot.waitSignal(window.logged_in, timeout=15000):
                dialog.submitted.emit(username, password)
        return window

    yield make
    from stations.threads import wait_idle
    for w in windows:
        w.shutdown()
        w.close()
        w.deleteLater()
    assert wait_idle(10), "a background job outlived its test"


def api_status(stack, headers, path):
    """GET a server path with the given headers; returns the JSON body."""
    resp = requests.get(stack.url + path, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


class PtyScanner:
    """A serial scanner on a pseudo-terminal: the app opens ``path``, the test types bytes."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def scan(self, data: bytes, terminator: bytes = b"\r") -> None:
        """Send one scan as the scanner would (payload, then its terminator)."""
        os.write(self.master, data + terminator)

    def close(self) -> None:
        """Unplug: close both ends."""
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture()
def pty_scanner():
    """A scanner on a pty; request it before ``make_station`` so it outlives the window."""
    scanner = PtyScanner()
    yield scanner
    scanner.close()


def dead_server_url() -> str:
    """A URL where nothing listens: the station is offline from its start."""
    from tests.support.procs import free_port
    return f"http://127.0.0.1:{free_port()}"
