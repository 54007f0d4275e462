"""A real web server for end-to-end tests: gunicorn running ``web:create_app()`` on a free port."""
from __future__ import annotations

import sys

import requests

from tests.support.procs import Proc, free_port, wait_until


class LiveServer:
    """gunicorn (2 workers x 4 threads, as in production) on a port of the loopback interface."""

    def __init__(self, env: dict, log_dir, workers: int = 2, threads: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc("gunicorn", [sys.executable, "-m", "gunicorn", "-w", str(workers),
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
        """Stop the server (SIGTERM, then SIGKILL what is left)."""
        self.proc.stop(10)
