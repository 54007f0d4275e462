"""A redis-server of a test's own (AOF on, as deployed) that the test may stop and restart."""
from __future__ import annotations

import subprocess

import pytest
import redis

from tests.support.procs import free_port, wait_until


class RedisServer:
    """A redis-server of the test's own (AOF on, as deployed), that can be restarted."""

    def __init__(self, data_dir):
        self.port, self.dir, self.proc = free_port(), data_dir, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), 20, 0.05, "redis-server to answer")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it writes its AOF and exits, as `restart` does
            self.proc.wait(20)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture()
def own_redis(tmp_path):
    """A private redis-server for one test, stopped afterwards."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
