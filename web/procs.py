"""Child processes in sessions of their own: the one wrapper behind ``neurohub up``'s children,
the tests' processes and the benchmarks' (they subclass it).

A child starts a new session, so it and whatever it starts (a Celery prefork pool, gunicorn's
workers) form one process group: a terminal's Ctrl-C reaches only the parent, and stopping a
child (SIGTERM, then SIGKILL of its group) leaves nothing of it behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REAP_SECONDS = 10  # after SIGKILL, how long to wait for the process to be reaped


class ChildProcess:
    """One child process in its own session; its output goes to ``log_path`` or is inherited."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, *,
                 cwd: Path | str | None = None, log_path: Path | None = None):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """The process id (its process group's id too)."""
        return self.proc.pid

    def start(self, env: dict | None = None) -> ChildProcess:
        """Start (or restart) the process, in ``env`` (default: its own ``env``)."""
        env = self.env if env is None else env
        out = open(self.log_path, "ab") if self.log_path is not None else None
        try:
            self.proc = subprocess.Popen(self.argv, env=env, cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT if out else None,
                                         start_new_session=True)
        finally:
            if out is not None:
                out.close()  # the child holds its own copy
        return self

    def running(self) -> bool:
        """True while the process has been started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, group: bool = False) -> None:
        """SIGTERM the process (or its whole group)."""
        if group:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        else:
            self.proc.terminate()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the process to exit; True if it has."""
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill_group(self) -> None:
        """SIGKILL the process group: the process, or what it left behind (pool children)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 20, *, group: bool = False) -> None:
        """SIGTERM (the group, if ``group``), wait ``timeout``, then SIGKILL the group and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.terminate(group)
            self.wait(timeout)
        self.kill_group()
        self.wait(REAP_SECONDS)

    def tree(self) -> list:
        """The process and all its descendants, as psutil processes ([] once it is gone)."""
        import psutil  # of the test and bench extras: only they measure process trees
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def output(self, n: int = 4000) -> str:
        """The last ``n`` characters the process logged ("" when it logs nowhere or nothing)."""
        try:
            return self.log_path.read_text(errors="replace")[-n:] if self.log_path else ""
        except OSError:
            return ""


def stop_together(children: list[ChildProcess], timeout: float, *, overdue=None,
                  stopped=None) -> None:
    """Stop several children at once: SIGTERM to each running one, ``timeout`` seconds for all
    of them together, then SIGKILL each one's group (``overdue(child)`` is told first when it
    had not exited) and reap it; ``stopped(child)`` after each."""
    for c in children:
        if c.running():
            c.terminate()
    deadline = time.monotonic() + timeout
    for c in children:
        if c.proc is None:
            continue
        if not c.wait(max(deadline - time.monotonic(), 0.1)) and overdue is not None:
            overdue(c)
        c.kill_group()
        c.wait(REAP_SECONDS)
        if stopped is not None:
            stopped(c)
