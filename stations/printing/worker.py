"""The label service on its own QThread, reporting printer state and printed jobs by signal."""
from __future__ import annotations

from ..qt import Signal
from ..threads import LoopWorker
from .service import LabelService


class LabelWorker(LoopWorker):
    """Ticks the LabelService every ``poll_s`` seconds (faster while jobs are waiting)."""

    state_changed = Signal(object)   # PrinterState
    printed = Signal(int)            # job id

    def __init__(self, service: LabelService, poll_s: float = 2.0):
        super().__init__(interval_ms=int(poll_s * 1000), name="labels")
        self.service, self.poll_ms = service, int(poll_s * 1000)
        service.on_state = self.state_changed.emit
        service.on_printed = self.printed.emit

    def tick(self) -> None:
        """Pull, print and ack; re-tick soon while the journal has work."""
        busy = self.service.tick()
        self.set_interval(200 if busy else self.poll_ms)
