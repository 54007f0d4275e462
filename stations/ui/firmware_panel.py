"""Firmware panel of the FLASH station: assigned release, download progress, verified state."""
from __future__ import annotations

from ..firmware import FirmwareManager
from ..i18n import tr
from ..qt import QGroupBox, QLabel, QProgressBar, QPushButton, QVBoxLayout, Signal
from ..threads import run_async


class FirmwarePanel(QGroupBox):
    """Shows assignments and runs download + verify + ack on a worker thread."""

    synced = Signal(object)   # list of (assignment, verified, events, error) or an exception

    def __init__(self, manager: FirmwareManager, parent=None):
        super().__init__(parent)
        self.manager = manager
        self.setObjectName("firmwarePanel")
        layout = QVBoxLayout(self)
        self.status = QLabel("")
        self.status.setObjectName("firmwareStatus")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("firmwareProgress")
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)  # only while a download runs
        self.button = QPushButton()
        self.button.setObjectName("firmwareButton")
        self.button.clicked.connect(lambda: self.refresh(quiet=False))
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.button)
        self.results: list = []
        self.busy = False
        self.product: str | None = None  # the lot on screen needs this product's firmware
        self.retranslate()

    @property
    def has_assignments(self) -> bool:
        """True when the last refresh found firmware assigned to this station."""
        return bool(self.results)

    def retranslate(self) -> None:
        """Texts in the current language."""
        self.setTitle(tr("firmware.title"))
        self.button.setText(tr("firmware.download"))

    def refresh(self, quiet: bool = False) -> None:
        """Fetch assignments, download / verify / ack each (in the background)."""
        if self.busy:
            return
        self.busy = True
        self.button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        run_async(self.manager.sync, on_progress=self._progress,
                  on_done=self._done, on_error=lambda exc: self._failed(exc, quiet))

    def _progress(self, done, total) -> None:
        self.progress.setValue(int(1000 * done / total) if total else 0)

    def _done(self, results: list) -> None:
        self.busy = False
        self.progress.setVisible(False)
        self.button.setEnabled(True)
        self.results = results
        lines = []
        for a, verified, events, error in results:
            line = tr("firmware.assigned", product=a.product, version=a.version, state=a.state)
            if "corrupt" in events:
                line += "\n" + tr("firmware.corrupt", version=a.version)
            if verified is not None:
                line += "\n" + tr("firmware.verified", version=a.version, short=a.sha256[:12])
                self.progress.setValue(1000)
            else:
                line += "\n" + tr("firmware.failed", detail=error)
            lines.append(line)
        missing = self._missing()
        self.status.setText("\n".join(([missing] if missing else []) + lines)
                            or tr("firmware.none"))
        if results:
            self.setVisible(True)
        self.synced.emit(results)

    def _failed(self, exc: Exception, quiet: bool) -> None:
        self.busy = False
        self.progress.setVisible(False)
        self.button.setEnabled(True)
        if not quiet:
            self.status.setText(tr("firmware.failed", detail=str(exc)))
        self.synced.emit(exc)

    def _missing(self) -> str | None:
        """The warning for the lot on screen when no verified file exists for its product."""
        if self.product is None or self.manager.verified_for(self.product) is not None:
            return None
        return tr("error.firmware_missing", product=self.product)

    def show_for(self, product: str) -> None:
        """Show whether a verified file exists for the lot's product."""
        self.product = product
        verified = self.manager.verified_for(product)
        if verified is not None:
            self.status.setText(tr("firmware.verified", version=verified.version,
                                   short=verified.sha256[:12]))
            return
        # Also while a background sync runs: its result keeps this warning until the file is
        # verified, so the operator is never left with an empty status.
        self.status.setText(self._missing())
        if not self.busy and any(a.product == product for a, *_ in self.results):
            self.refresh(quiet=True)  # assigned but not (or no longer) verified: fetch
