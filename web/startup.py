"""Refusing to start on a configuration error: one line on stderr, a non-zero exit, no traceback.

Every process builds the app with ``create_app`` (gunicorn's factory, ``celery -A workers.main``,
``neurohub``), so this is the one place that turns a ConfigError into an exit.

Gunicorn needs care: its master stops ("App failed to load.") when a worker exits with status 4,
but when a second worker also exits with 4 while the master is stopping, the master raises
HaltServer again inside its own shutdown and dies with a traceback and status 1 (gunicorn issues
#2186, #1095). So within one gunicorn master only the first worker that meets the error exits
with 4; its siblings print the same line, wait until the master has reaped that first worker
(it is then stopping), and exit 0, which the stopping master takes quietly.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from .config import CONFIG_EXIT_STATUS, ConfigError

SIBLING_WAIT = 30.0  # seconds a sibling waits for the master to reap the first worker


def refuse(exc: ConfigError) -> NoReturn:
    """Print the configuration error as one line and exit non-zero."""
    print(exc.code, file=sys.stderr, flush=True)
    if "gunicorn.workers.base" in sys.modules:
        first = _first_refusal_in_master()
        if first is not None and _reaped(first, SIBLING_WAIT):
            raise SystemExit(0)  # the master is stopping on the first worker's status
    raise SystemExit(CONFIG_EXIT_STATUS)


def _first_refusal_in_master() -> int | None:
    """None for the first worker of this gunicorn master to refuse, else that worker's pid.

    An O_EXCL marker file holds the first worker's pid; the master's start time in its name keeps
    it unique even when the master's pid is reused.
    """
    master = os.getppid()
    try:
        started = Path(f"/proc/{master}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "0"
    marker = Path(tempfile.gettempdir()) / f"neurohub-refused-{master}-{started}"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the first worker writes its pid right away
            text = marker.read_text().strip()
            if text:
                return int(text)
            time.sleep(0.01)
        return None
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    return None


def _reaped(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` is gone (a zombie still answers signal 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.02)
    return False
