"""The operator's main screen: scan, lot, measurements, Complete, results, status bar."""
from __future__ import annotations

import logging
import time
from functools import partial

from ..api_client import AuthError, NotLoggedIn, Offline
from ..i18n import tr
from ..queue import Entry
from ..scanner import Barcode, parse_barcode
from ..station import Lookup, StationContext
from ..threads import run_async
from ..qt import QApplication, QMainWindow, Qt, QTimer, Signal
from .confirm import OutOfLimitsConfirm
from .dialogs import LoginDialog
from .main_layout import setup_ui
from .status import (ActivityFilter, ScanBridge, decision_text, printer_state_text, scanner_text,
                     sync_text)

log = logging.getLogger(__name__)
HISTORY = 50  # result lines kept on screen; older ones are in the queue database


class MainWindow(QMainWindow):
    """Main screen; all network and printing work runs on worker threads."""

    lot_shown = Signal(object)      # Lookup, after the panel and form show it
    result_shown = Signal(object)   # Entry, after its decision is on screen
    logged_in = Signal(dict)

    def __init__(self, ctx: StationContext):
        super().__init__()
        self.ctx = ctx
        self.lookup: Lookup | None = None
        self.login_dialog: LoginDialog | None = None
        self._shut = False
        self._pending_scans = 0
        self._scans = 0            # scans handed to a lookup so far
        self._shown_scan = 0       # the newest scan whose result is on screen
        self._sending: int | None = None  # queue seq of the last press, until decided/next scan
        self.setObjectName("mainWindow")
        setup_ui(self)
        self.scan_field.returnPressed.connect(self._manual_scan)
        self.logout_button.clicked.connect(lambda: self.logout("logout"))
        self.complete_button.clicked.connect(self.complete)
        self.confirm = OutOfLimitsConfirm(self.complete_button, self.form, self)
        self.confirm.changed.connect(self._update_complete)
        self.bridge = ScanBridge()
        self.bridge.scanned.connect(self.handle_barcode)
        self.bridge.state.connect(self._scanner_state)
        if ctx.scanner is not None:
            ctx.scanner.on_scan = self.bridge.scanned.emit
            ctx.scanner.on_state = lambda state, detail="": self.bridge.state.emit(state, detail)
            ctx.scanner.start()
        self._activity = ActivityFilter(ctx.api)
        QApplication.instance().installEventFilter(self._activity)
        self.idle_timer = QTimer(self)
        self.idle_timer.timeout.connect(self._check_idle)
        self.idle_timer.start(5000)
        self.refresh_timer = QTimer(self)  # lot panel refresh after decisions (debounced)
        self.refresh_timer.setSingleShot(True)
        self.refresh_timer.setInterval(700)
        self.refresh_timer.timeout.connect(self._refresh_lot)
        self.retranslate()
        self._start_sync()

    def _start_sync(self) -> None:
        """Start the sync worker now: its probe tells online/offline before anyone logs in."""
        self.ctx.make_workers()
        queued = Qt.QueuedConnection
        self.ctx.sync_worker.state_changed.connect(self.show_sync_state, queued)
        self.ctx.sync_worker.decided.connect(self.show_decision, queued)
        self.ctx.sync_worker.auth_problem.connect(lambda m: self.logout("auth"), queued)
        self.ctx.label_worker.state_changed.connect(self.show_printer_state, queued)
        self.ctx.sync_worker.start()

    def retranslate(self) -> None:
        """Set every static text in the current language."""
        self.setWindowTitle(tr("app.title", station=self.ctx.cfg.station))
        self.scan_title.setText(tr("scan.label"))
        self.scan_field.setPlaceholderText(tr("scan.placeholder"))
        self.settings_button.setText(tr("settings.open"))
        self.logout_button.setText(tr("login.logout"))
        self.results_title.setText(tr("results.title"))
        self.complete_button.setText(self.confirm.label())
        self.lot_panel.retranslate()
        self.firmware_panel.retranslate()
        if self.login_dialog is not None and not self.login_dialog.isVisible():
            self.login_dialog.deleteLater()  # rebuilt in the new language when next needed
            self.login_dialog = None
        self.show_sync_state(self.ctx.syncer.state)
        self.show_printer_state(self.ctx.labels.state)
        self.user_label.setText(tr("status.user", user=self.ctx.api.username or "—"))

    # -- login -------------------------------------------------------------------------
    def show_login(self, message: str = "") -> LoginDialog:
        """Open the (non-blocking) login dialog."""
        if self.login_dialog is None:
            self.login_dialog = LoginDialog(self, self.ctx.cfg.badge_prefix)
            self.login_dialog.submitted.connect(self.login)
        self.login_dialog.open()
        self.login_dialog.reset(message)  # after open(): showing must not move the focus
        return self.login_dialog

    def login(self, username: str, password: str) -> None:
        """Log in on a worker thread; the dialog closes when it worked."""
        run_async(self.ctx.login, username, password, on_done=self._logged_in,
                  on_error=self._login_failed)

    def _logged_in(self, info: dict) -> None:
        if self.login_dialog is not None:
            self.login_dialog.accept()
        self.user_label.setText(tr("status.user", user=info["username"]))
        self.ctx.start_workers()  # the label worker needs a login; the sync worker already runs
        self.ctx.sync_worker.wake()
        for entry in self.ctx.queue.unseen():  # decisions that came while no one watched
            self.show_decision(entry)
        if info.get("offline"):
            self.show_message(tr("login.offline_ok"), "#8a6d00")
        self.firmware_panel.refresh(quiet=True)
        self.logged_in.emit(info)

    def _login_failed(self, exc: Exception) -> None:
        log.warning("login failed: %s", exc)
        if isinstance(exc, Offline):
            message = tr("login.offline_unknown")
        elif isinstance(exc, AuthError):
            message = tr("login.failed")
        else:
            message = tr("error.server", detail=str(exc))
        if self.login_dialog is not None:
            self.login_dialog.failed(message)

    def logout(self, reason: str = "logout") -> None:
        """End the session (button, idle timeout or refused credentials) and ask to log in."""
        if self.ctx.api.username:
            log.info("operator %s logged out (%s)", self.ctx.api.username, reason)
        self.ctx.api.logout(reason)
        self.user_label.setText(tr("status.user", user="—"))
        message = {"idle": tr("login.idle", minutes=f"{self.ctx.cfg.idle_timeout_min:g}"),
                   "auth": tr("error.login_expired")}.get(reason, "")
        self.show_login(message)

    def _check_idle(self) -> None:
        if self.ctx.api.logged_in and self.ctx.api.check_idle():
            self.logout("idle")

    # -- scanning ----------------------------------------------------------------------
    def _manual_scan(self) -> None:
        text = self.scan_field.text().strip()
        self.scan_field.clear()
        if text:
            self.handle_barcode(parse_barcode(text, self.ctx.cfg.gs_substitute))

    def handle_barcode(self, barcode: Barcode) -> None:
        """A scan from any source: a badge at login, else a lot or unit lookup off-thread."""
        self.ctx.api.touch()
        if self.login_dialog is not None and self.login_dialog.isVisible():
            self.login_dialog.accept_scan(barcode.text)
            return
        current = self.lookup.lot if self.lookup else None
        # Until this scan resolves, Complete would act on the previous unit: hold it.
        self._pending_scans += 1
        self._scans += 1
        self.complete_button.setEnabled(False)
        run_async(self.ctx.lookup, barcode, current,
                  on_done=partial(self._scan_done, self._scans),
                  on_error=partial(self._scan_failed, self._scans))

    def _stale(self, scan: int) -> bool:
        # Lookups run in parallel: an older scan that resolves late must not replace a newer one.
        if scan < self._shown_scan:
            return True
        self._shown_scan = scan
        return False

    def _scan_done(self, scan: int, result: Lookup) -> None:
        self._pending_scans -= 1
        if self._stale(scan):
            self._update_complete()
            return
        self._sending = None  # the operator moved on to what they just scanned
        self.show_lookup(result)

    def _scan_failed(self, scan: int, exc: Exception) -> None:
        self._pending_scans -= 1
        log.error("lookup failed: %s", getattr(exc, "trace", exc))
        if self._stale(scan):
            self._update_complete()
            return
        if isinstance(exc, NotLoggedIn):
            failed = Lookup(error=("error.login_expired", {}))
            self.show_login(tr("error.login_expired"))
        else:
            failed = Lookup(error=("error.server", {"detail": str(exc)}))
        self.show_lookup(failed)

    def show_lookup(self, result: Lookup, emit: bool = True) -> None:
        """Show a resolved scan: lot panel, measurement form, Complete state."""
        if result.error and result.lot is None:
            # The operator no longer holds what is on screen: Complete must not act on it.
            self.clear_item()
            self.show_message(tr(result.error[0], **result.error[1]), "#b00020")
            if emit:
                self.lot_shown.emit(result)
            return
        same_step = (self.lookup and self.lookup.lot and result.lot
                     and self.lookup.lot["lot_no"] == result.lot["lot_no"]
                     and self.lookup.step == result.step)
        self.lookup = result
        lot, step = result.lot, result.step
        steps = (self.ctx.station_record or {}).get("steps") or []
        serves = self.ctx.serves(lot.get("current_step")) if lot.get("current_step") else None
        self.lot_panel.show_lot(lot, result.product, result.unit, serves, steps, result.cached_at)
        if not same_step:
            self.form.set_specs((step or {}).get("measurements") or [])
        needs_fw = bool(step and step.get("requires_firmware"))
        self.firmware_panel.setVisible(needs_fw or self.firmware_panel.has_assignments)
        if needs_fw:
            self.firmware_panel.show_for(lot["product"])
        self.confirm.reset()
        in_flight = self._update_complete()
        if emit:  # a background refresh must not replace the decision on screen
            self._explain(result, serves, in_flight)
            fields = list(self.form.fields.values())
            (fields[0] if fields else self.scan_field).setFocus()
            self.lot_shown.emit(result)

    def clear_item(self) -> None:
        """Forget the lot and unit on screen (after a scan that did not resolve)."""
        self.lookup = None
        self.confirm.reset()
        self.lot_panel.show_lot(None)
        self.form.set_specs([])
        self.firmware_panel.product = None
        self.firmware_panel.setVisible(self.firmware_panel.has_assignments)
        self.complete_button.setEnabled(False)

    def _in_flight(self) -> Entry | None:
        """A queued, undecided completion of exactly the lot, step and unit on screen."""
        res = self.lookup
        if res is None or res.lot is None or res.step is None:
            return None
        return self.ctx.queue.open_for(res.lot["lot_no"], res.step["step"], res.unit)

    def _update_complete(self) -> Entry | None:
        """Enable Complete only for an active item with nothing of it still in flight."""
        res = self.lookup
        in_flight = self._in_flight()
        lot = res.lot if res else None
        self.complete_button.setEnabled(
            lot is not None and res.step is not None and not res.error
            and bool(self.ctx.serves(lot.get("current_step")))
            and lot.get("status") in ("created", "in_process")
            and not self._pending_scans and self._sending is None and in_flight is None
            and not self.confirm.waiting)
        return in_flight

    def _explain(self, result: Lookup, serves: bool | None, in_flight: Entry | None = None
                 ) -> None:
        lot, step = result.lot, result.step
        if in_flight is not None and not result.error:
            unit = in_flight.body.get("unit_serial")
            self.show_message(tr("complete.in_flight", seq=in_flight.seq, lot=lot["lot_no"],
                                 step=step["step"], unit=f" {unit}" if unit else ""), "#8a6d00")
        elif result.error:
            self.show_message(tr(result.error[0], **result.error[1]), "#b00020")
        elif step is not None and not serves:
            self.show_message(tr("error.wrong_station", step=step["step"]), "#b00020")
        elif lot.get("status") not in ("created", "in_process"):
            self.show_message(tr("error.lot_not_active", lot=lot["lot_no"],
                                 status=tr(f"status.{lot.get('status')}")), "#b00020")
        else:
            self.result_label.setText("")

    # -- completing --------------------------------------------------------------------
    def complete(self) -> Entry | None:
        """Check locally, commit to the queue, let the sync worker send it."""
        self.ctx.api.touch()
        res = self.lookup
        if self._pending_scans or self._sending is not None:
            # A scan is still resolving (its result decides what to complete), or this item
            # was just completed: one press, one completion.
            return None
        if res is None or res.lot is None or res.step is None:
            self.show_message(tr("error.no_lot"), "#b00020")
            return None
        lot, step = res.lot, res.step
        in_flight = self._in_flight()
        if in_flight is not None:
            self._explain(res, True, in_flight)
            return None
        if not self.ctx.serves(step["step"]):
            self.show_message(tr("error.wrong_station", step=step["step"]), "#b00020")
            return None
        firmware = None
        if step.get("requires_firmware"):
            firmware = self.ctx.firmware.verified_for(lot["product"])
            if firmware is None:
                self.show_message(tr("error.firmware_missing", product=lot["product"]), "#b00020")
                return None
        values, errors, out = self.form.collect()
        if errors:
            self.show_message("\n".join(errors), "#b00020")
            return None
        if out and not self.confirm.confirmed():
            if not self.confirm.armed:  # warn; a press after the pause records it
                self.confirm.arm()
                self.show_message(tr("complete.out_of_limits_warning"), "#8a6d00")
            return None
        entry = self.ctx.submit(lot, step, values, res.unit, firmware)
        self._sending = entry.seq
        self.complete_button.setEnabled(False)  # until its decision or the next scan
        self.confirm.reset()
        online = self.ctx.syncer.state.online
        self.show_message(tr("complete.queued" if online else "complete.queued_offline",
                             seq=entry.seq), "#1565c0")
        self.form.clear()
        if res.unit:  # next unit: keep the lot, forget the unit
            res.unit = None
            self.lot_panel.values["lot.unit"].setText("—")
        self.scan_field.setFocus()
        self.show_sync_state(self.ctx.syncer.state, pending=self.ctx.queue.pending_count())
        return entry

    def show_decision(self, entry: Entry) -> None:
        """Show the server's decision (or refusal) of a queued completion."""
        text, colour = decision_text(entry)
        self.show_message(text, colour)
        self.history.insertItem(0, time.strftime("%H:%M:%S ") + text.replace("\n", " "))
        while self.history.count() > HISTORY:
            self.history.takeItem(self.history.count() - 1)
        self.ctx.queue.mark_seen(entry.seq)
        if entry.seq == self._sending:
            # Complete comes back only with the lot as the server now has it (the refresh
            # below): the lot on screen may already have moved on to the next step.
            self._sending = None
        self.show_sync_state(self.ctx.syncer.state, pending=self.ctx.queue.pending_count())
        self.result_shown.emit(entry)
        if self.lookup and self.lookup.lot and self.lookup.lot["lot_no"] == entry.body["lot_no"]:
            self.refresh_timer.start()  # one refresh after a burst of decisions, not one each

    def _refresh_lot(self) -> None:
        if self.lookup and self.lookup.lot and not self._pending_scans:
            run_async(self.ctx.lookup, parse_barcode(self.lookup.lot["lot_no"]), None,
                      on_done=self._refreshed)

    def _refreshed(self, result: Lookup) -> None:
        # Background refresh after a decision: keep the unit being worked on, if any.
        if result.lot and not result.error and not self._pending_scans and self.lookup \
                and self.lookup.lot and result.lot["lot_no"] == self.lookup.lot["lot_no"]:
            result.unit = self.lookup.unit
            self.show_lookup(result, emit=False)

    # -- status ------------------------------------------------------------------------
    def show_message(self, text: str, colour: str = "#000000") -> None:
        """Show a message in the result area (the operator's language, big)."""
        self.result_label.setStyleSheet(f"color: {colour};")
        self.result_label.setText(text)

    def show_sync_state(self, state, pending: int | None = None) -> None:
        """'online' / 'offline — N queued' / waiting for an operator."""
        self.net_label.setText(sync_text(state, pending))
        self.net_label.setStyleSheet("color: #b00020; font-weight: bold;"
                                     if state.online is False else "")

    def show_printer_state(self, state) -> None:
        """Printer status from ~HS, translated."""
        self.printer_label.setText(printer_state_text(state))

    def _scanner_state(self, state: str, detail: str) -> None:
        self.scanner_label.setText(scanner_text(state))
        if state == "disconnected":
            self.scanner_label.setToolTip(tr("error.scanner", detail=detail))

    def shutdown(self) -> None:
        """Stop timers and background work (clean exit); safe to call twice."""
        if self._shut:
            return
        self._shut = True
        self.idle_timer.stop()
        self.refresh_timer.stop()
        QApplication.instance().removeEventFilter(self._activity)
        self.ctx.stop()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Closing the window stops the workers; the queue is already on disk."""
        self.shutdown()
        super().closeEvent(event)
