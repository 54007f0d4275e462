"""Background work for the UI: periodic loops on their own QThread, one-shot jobs on a pool.

Nothing here touches widgets: results travel back as Qt signals, which Qt queues onto the UI
thread because the emitting object lives in another thread.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from .qt import QObject, QThread, QTimer, QtCore, Signal, Slot

QCoreApplication = QtCore.QCoreApplication

log = logging.getLogger(__name__)


class _PyThread(QThread):
    """A QThread whose loop runs inside a Python frame, so the thread keeps one Python thread
    state (and its thread-locals) for its whole life instead of one per callback."""

    def run(self) -> None:
        """Run the Qt event loop."""
        self.exec_()


class LoopWorker(QObject):
    """Calls ``tick()`` every ``interval_ms`` on a dedicated thread; ``wake()`` ticks at once."""

    failed = Signal(str)
    _wake = Signal()
    _halt = Signal()

    def __init__(self, interval_ms: int = 1000, name: str = "loop"):
        super().__init__()
        self.interval_ms = interval_ms
        self._thread = _PyThread()
        self._thread.setObjectName(name)
        self._timer: QTimer | None = None
        self.moveToThread(self._thread)
        self._thread.started.connect(self._begin)
        self._wake.connect(self._on_wake)
        self._halt.connect(self._on_halt)

    def start(self) -> None:
        """Start the thread (ticks begin immediately)."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.isRunning()

    def stop(self, wait_ms: int = 15000) -> None:
        """Stop the loop; waits for a tick in progress (network calls have timeouts)."""
        if self._thread.isRunning():
            self._halt.emit()  # handled on the worker thread, after a tick in progress
            if not self._thread.wait(wait_ms):
                log.error("%s did not stop within %d ms", type(self).__name__, wait_ms)

    def wake(self) -> None:
        """Ask for a tick now (safe from any thread)."""
        self._wake.emit()

    def set_interval(self, interval_ms: int) -> None:
        """Change the tick period (call from the worker's own thread, e.g. inside tick)."""
        if self._timer is not None and self._timer.interval() != interval_ms:
            self._timer.setInterval(interval_ms)

    @Slot()
    def _begin(self) -> None:
        self._timer = QTimer()
        self._timer.timeout.connect(self._run_tick)
        self._timer.start(self.interval_ms)
        self._run_tick()

    @Slot()
    def _on_halt(self) -> None:
        # A QTimer must be stopped and deleted by its own thread, and this object must not be
        # destroyed later from the UI thread while it still belongs to a finished thread.
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        app = QCoreApplication.instance()
        if app is not None:
            self.moveToThread(app.thread())
        self._thread.quit()

    @Slot()
    def _on_wake(self) -> None:
        self._run_tick()

    def _run_tick(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # one bad tick must not end the loop (or the app)
            log.exception("%s tick failed", type(self).__name__)
            self.failed.emit(f"{type(exc).__name__}: {exc}")

    def tick(self) -> None:
        """One round of work; override."""


class _Signals(QObject):
    done = Signal(object)
    error = Signal(object)
    progress = Signal(object, object)


# Python threads (not QThreadPool's): their Python thread state lives as long as the thread,
# so per-thread resources (SQLite connections, HTTP sessions) are reused, not re-created.
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="station-job")
_keep: set[_Signals] = set()  # signal objects must outlive their job until delivered
_lock = threading.Lock()
_running = 0


def _run(fn, args, kwargs, signals: _Signals) -> None:
    global _running
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        exc.trace = traceback.format_exc()
        signals.error.emit(exc)
    else:
        signals.done.emit(result)
    finally:
        with _lock:
            _running -= 1


def run_async(fn, *args, on_done=None, on_error=None, on_progress=None, **kwargs) -> _Signals:
    """Run ``fn`` on a worker thread; callbacks run on the UI thread (queued signals).

    When ``on_progress`` is given, ``fn`` receives ``progress=callable(a, b)`` to report with.
    """
    global _running
    signals = _Signals()
    _keep.add(signals)
    if on_done:
        signals.done.connect(on_done)
    if on_error:
        signals.error.connect(on_error)
    for signal in (signals.done, signals.error):
        signal.connect(partial(_keep.discard, signals))
        # Deleting the QObject drops its connections, which hold the callbacks above:
        # without it each job would leak its signals object and whatever the callbacks hold.
        signal.connect(signals.deleteLater)
    if on_progress:
        signals.progress.connect(on_progress)
        kwargs["progress"] = signals.progress.emit
    with _lock:
        _running += 1
    _pool.submit(_run, fn, args, kwargs, signals)
    return signals


def wait_idle(timeout: float = 10.0) -> bool:
    """Wait until no background job is running (tests, shutdown); True when idle."""
    deadline = time.monotonic() + timeout
    while _running and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _running


class MainThreadGC(QObject):
    """Python's cyclic garbage collector, run only on the UI thread.

    CPython collects reference cycles in whichever thread happens to allocate when a threshold is
    crossed, here mostly the background threads above. A cycle that holds a widget or any other
    UI-thread QObject is then destroyed from that thread, which Qt does not allow: memory is
    corrupted and the app crashes later somewhere unrelated. So automatic collection is off and a
    timer on the UI thread collects, generation by generation, once the same thresholds are
    crossed (the workaround from the PyQt mailing list, as calibre does it).
    """

    def __init__(self, interval_ms: int = 500, parent: QObject | None = None):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.collections = 0
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    @Slot()
    def check(self) -> None:
        """Collect the generations whose counts crossed their thresholds (UI thread only)."""
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self.thresholds[generation]:
                break
            gc.collect(generation)
            self.collections += 1

    def stop(self) -> None:
        """Stop the timer and give collection back to Python (as it was before)."""
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
