"""Every process kind, started as operators start it, meets a configuration error with one clear
line and a non-zero exit: no traceback, and no gunicorn master re-forking workers forever."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import ROOT
from web.config import CONFIG_EXIT_STATUS

BIN = Path(sys.executable).parent
PROCESSES = {
    # README's web command: its config file checks the configuration in gunicorn's master.
    "web": [str(BIN / "gunicorn"), "-c", "python:web.gunicorn_conf", "--bind", "127.0.0.1:0",
            "-w", "2", "web:create_app()"],
    "worker": [str(BIN / "celery"), "-A", "workers.main", "worker", "-Q", "completions"],
    "beat": [str(BIN / "celery"), "-A", "workers.main", "beat"],
    "relay": [str(BIN / "neurohub"), "relay"],
    "cli": [str(BIN / "neurohub"), "create-user", "someone", "--role", "operator",
            "--password", "long-enough-pw"],
    "up": [str(BIN / "neurohub"), "up"],
}
PRODUCTION = {"NEUROHUB_ENV": "production", "DATABASE_URL": "postgresql+psycopg://mes@db/mes",
              "REDIS_URL": "redis://127.0.0.1:6379/2", "FLOWER_BASIC_AUTH": "ops:secret"}
ERRORS = {
    # README's production settings with a secret of one repeated character
    "weak secret": (dict(PRODUCTION, SECRET_KEY="x" * 40), "SECRET_KEY must be random"),
    # production without Redis: never a SQLite broker behind the operators' backs
    "no redis": (dict(PRODUCTION, SECRET_KEY="kq3V9-xTz_LmR8pW2cYbN4uHf7JdG0sA5eQ1oKiZ",
                      REDIS_URL=""), "REDIS_URL must be set"),
    # a typo on the embedded default
    "bad number": ({"API_PORT": "eighty"}, "API_PORT='eighty' must be a whole number"),
}


# Every process kind with one error; the other errors on the cheapest process and on the web.
CASES = [(process, "weak secret") for process in PROCESSES] + [
    ("cli", "no redis"), ("cli", "bad number"), ("web", "bad number")]


@pytest.mark.parametrize("process, error", CASES)
def test_a_configuration_error_is_one_line_and_a_non_zero_exit(tmp_path, process, error):
    settings, message = ERRORS[error]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "LANG": "C.UTF-8", "NEUROHUB_DATA_DIR": str(tmp_path / "var"),
           **settings}
    done = subprocess.run(PROCESSES[process], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # gunicorn must stop, not re-fork forever
    output = done.stdout + done.stderr
    assert done.returncode == CONFIG_EXIT_STATUS, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if "configuration error" in line]
    # One line, naming the problem (gunicorn: from its master, before any worker is forked).
    assert len(lines) == 1 and lines[0].startswith("configuration error: "), output
    assert message in lines[0], output
    if process != "web":
        assert not done.stdout, output
