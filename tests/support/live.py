"""Real web servers for end-to-end tests: gunicorn running ``web:create_app()`` on a free port,
or a test app served from a thread for a browser."""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

import requests
from werkzeug.serving import make_server

from tests.support.procs import Proc, free_port, wait_until


class LiveServer:
    """gunicorn (2 workers x 4 threads and the product's gunicorn config, as in production) on a
    port of the loopback interface; restartable on the same port."""

    def __init__(self, env: dict, log_dir, workers: int = 2, threads: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc("gunicorn", [sys.executable, "-m", "gunicorn",
                                      "-c", "python:web.gunicorn_conf", "-w", str(workers),
                                      "--threads", str(threads), "-b", f"127.0.0.1:{self.port}",
                                      "--graceful-timeout", "5", "web:create_app()"], env, log_dir)

    def up(self) -> bool:
        """True when /healthz answers."""
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def start(self) -> "LiveServer":
        """Start and wait until healthy."""
        self.proc.start()
        try:
            wait_until(self.up, 60, 0.1, "gunicorn to answer /healthz")
        except AssertionError:
            raise AssertionError("gunicorn did not start:\n" + self.proc.output()) from None
        return self

    def stop(self) -> None:
        """Stop the server and wait until the port refuses connections."""
        self.proc.stop(10)
        wait_until(lambda: not self.up(), 20, 0.1, "gunicorn to stop")


@contextmanager
def serve_in_thread(app):
    """``app`` on a real HTTP port of the loopback interface (werkzeug, threaded), for a
    browser; yields its base URL and stops the server after the block."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
