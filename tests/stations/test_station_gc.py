"""Reference cycles that hold Qt objects are collected on the UI thread, never on a background
thread: Qt objects must be destroyed by the thread they live in (stations/threads.MainThreadGC,
the `ui_gc` fixture)."""
from __future__ import annotations

import gc
import threading

from stations.qt import QObject


class _Cycle:
    """A reference cycle holding a QObject; records the thread that destroyed it."""

    def __init__(self, seen: list):
        self.widget, self.me, self.seen = QObject(), self, seen

    def __del__(self):
        self.seen.append(threading.get_ident())


def _allocate_on_a_background_thread() -> list:
    """What the station's sync, label and scanner threads do all day: allocate container
    objects, enough to cross the first generation's threshold many times over, and keep some
    (cached responses, queued jobs)."""
    kept: list = []

    def work():
        junk: list = []
        for i in range(200_000):
            junk.append([i])
            if len(junk) > 1000:
                junk.clear()
        kept.extend([i] for i in range(2000))
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return kept


def test_without_the_guard_a_background_thread_destroys_ui_objects(ui_gc):
    ui_gc.stop()
    assert gc.isenabled()
    seen: list = []
    _Cycle(seen)
    _allocate_on_a_background_thread()
    assert seen and seen[0] != threading.get_ident()  # the hazard the guard exists for


def test_the_guard_collects_cycles_on_the_ui_thread_only(ui_gc, qtbot):
    guard = ui_gc  # the one every station test runs under, as the app does
    try:
        assert not gc.isenabled()
        seen: list = []
        _Cycle(seen)
        kept = _allocate_on_a_background_thread()
        assert seen == []  # the background thread collected nothing
        qtbot.waitUntil(lambda: bool(seen), timeout=5000)
        assert seen == [threading.get_ident()] and guard.collections > 0 and kept
    finally:
        guard.stop()
    assert gc.isenabled()
