"""web.procs: the child-process wrapper of `neurohub up`, the tests and the benchmarks."""
from __future__ import annotations

import os
import sys
import time

import psutil

from web.procs import ChildProcess, stop_together

# A parent that starts a grandchild (as a prefork pool does), prints both pids, and ignores
# SIGTERM when told to (a wedged worker).
FAMILY = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(os.getpid(), child.pid, flush=True)
time.sleep(60)
"""


def _family(tmp_path, mode: str) -> tuple[ChildProcess, list[int]]:
    """A FAMILY process named ``mode`` ("polite" or "stubborn"), and its and its child's pids."""
    proc = ChildProcess(mode, [sys.executable, "-c", FAMILY, mode], dict(os.environ),
                        cwd=tmp_path, log_path=tmp_path / f"{mode}.log").start()
    deadline = time.monotonic() + 10
    while not proc.output().strip():
        assert time.monotonic() < deadline, "the family did not start"
        time.sleep(0.05)
    return proc, [int(p) for p in proc.output().split()]


def _gone(pid: int) -> bool:
    """True once ``pid`` has died (a SIGKILL is delivered asynchronously: wait up to 5 s)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_child_has_its_own_session_and_logs_to_its_file(tmp_path):
    proc, (pid, grandchild) = _family(tmp_path, "polite")
    try:
        assert proc.running() and proc.pid == pid
        assert os.getsid(pid) == pid != os.getsid(0)  # Ctrl-C at our terminal does not reach it
        assert os.getpgid(grandchild) == pid  # its children are in its group
    finally:
        proc.stop(5)


def test_stop_terminates_and_kills_what_the_child_left_behind(tmp_path):
    proc, (pid, grandchild) = _family(tmp_path, "polite")
    proc.stop(5)
    assert not proc.running() and proc.proc.returncode == -15  # SIGTERM ended it
    assert _gone(grandchild)  # the grandchild got no SIGTERM: the group's SIGKILL took it


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace(tmp_path):
    proc, (pid, grandchild) = _family(tmp_path, "stubborn")
    started = time.monotonic()
    proc.stop(0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert proc.proc.returncode == -9 and _gone(grandchild)


def test_stop_together_shares_one_deadline_and_names_the_overdue(tmp_path):
    polite, (_, polite_kid) = _family(tmp_path, "polite")
    stubborn, (_, stubborn_kid) = _family(tmp_path, "stubborn")
    overdue, stopped = [], []
    started = time.monotonic()
    stop_together([polite, stubborn, ChildProcess("never", ["true"])], 1.0,
                  overdue=lambda c: overdue.append(c.name), stopped=lambda c: stopped.append(c.name))
    assert time.monotonic() - started < 5
    assert overdue == ["stubborn"] and stopped == ["polite", "stubborn"]  # "never" never ran
    assert (polite.proc.returncode, stubborn.proc.returncode) == (-15, -9)
    assert _gone(polite_kid) and _gone(stubborn_kid)


def test_output_is_empty_without_a_log(tmp_path):
    assert ChildProcess("quiet", ["true"]).output() == ""
    assert ChildProcess("missing", ["true"], log_path=tmp_path / "none.log").output() == ""
