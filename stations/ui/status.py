"""Status-bar and decision texts; the QObjects that carry scanner and activity events to the UI."""
from __future__ import annotations

from ..i18n import printer_text, reason_text, tr
from ..qt import QEvent, QObject, Signal


class ScanBridge(QObject):
    """Carries scanner callbacks (any thread) to the UI thread as signals."""

    scanned = Signal(object)
    state = Signal(str, str)


class ActivityFilter(QObject):
    """Any key or click counts as operator activity (postpones the idle logout)."""

    def __init__(self, api):
        super().__init__()
        self.api = api

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 (Qt name)
        """Touch the session on input events; never consumes them."""
        if ev.type() in (QEvent.KeyPress, QEvent.MouseButtonPress):
            self.api.touch()
        return False


def sync_text(state, pending: int | None = None) -> str:
    """'online' / 'offline — N queued' / 'N queued for X: waiting for that operator'."""
    count = state.pending if pending is None else pending
    if state.waiting_for:
        return tr("queue.waiting_for_user", count=count, user=state.waiting_for)
    if state.online is None:
        return tr("status.connecting")
    if not state.online:
        return tr("offline.queued", count=count)
    return tr("online.queued", count=count) if count else tr("online")


def printer_state_text(state) -> str:
    """The local printer's ~HS state, translated."""
    text = tr("printer.ready") if state.ready else ", ".join(
        printer_text(c) for c in state.codes) or "—"
    return tr("status.printer", state=text)


def scanner_text(state: str) -> str:
    """'scanner connected' / 'scanner unplugged'."""
    return tr(f"scanner.{state}") if state in ("connected", "disconnected") else state


def decision_text(entry) -> tuple[str, str]:
    """The text and colour that show a queued completion's decision (or refusal)."""
    unit = f" {entry.body['unit_serial']}" if entry.body.get("unit_serial") else ""
    values = {"lot": entry.body["lot_no"], "step": entry.body["step"], "unit": unit}
    if entry.state == "accepted":
        return tr("complete.accepted", **values), "#1b7f1b"
    if entry.state == "rejected":
        reasons = "\n".join("• " + reason_text(r.get("code", ""), r.get("detail"))
                            for r in entry.reasons)
        return tr("complete.rejected", **values) + "\n" + reasons, "#b00020"
    if entry.state == "invalid":
        return tr("complete.invalid", seq=entry.seq, detail=entry.last_error), "#b00020"
    return tr("complete.failed", seq=entry.seq, detail=entry.last_error or entry.state), "#b00020"
