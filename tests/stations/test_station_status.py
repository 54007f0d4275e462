"""Status bar and login dialog: online/offline within seconds of the real server stopping, a
true state before anyone logs in, the cursor in Username."""
from __future__ import annotations

import time

from PyQt5.QtCore import Qt

from stations.i18n import tr
from stations.sync import SyncState
from stations.threads import wait_idle
from stations.ui.status import sync_text
from tests.stations.conftest import FCT_STEP

RED = "color: #b00020"


def _station(factory):
    _, user = factory.user("operator")
    product = factory.product(routing=[FCT_STEP, {"step": "PACK", "name": "Packing"}])
    station = factory.station(steps=["FCT"], printer_uri=None)
    return user, station, factory.lot(product, quantity=1)


def _offline_text():
    return tr("offline.queued", count=0)


def test_before_login_the_status_bar_shows_the_server_is_up(stack, factory, make_station, qtbot):
    _, station, _ = _station(factory)
    w = make_station(station, login=False)
    dialog = w.show_login()
    assert w.net_label.text() == tr("status.connecting"), "unknown yet: not a red 'offline'"
    assert RED not in w.net_label.styleSheet()
    qtbot.waitUntil(lambda: w.net_label.text() == tr("online"), timeout=5000)
    assert RED not in w.net_label.styleSheet()
    assert dialog.isVisible() and not w.ctx.api.logged_in


def test_offline_shows_within_seconds_of_the_server_stopping_and_back(stack, factory,
                                                                      make_station, qtbot):
    user, station, lot = _station(factory)
    idle = make_station(station, user)             # default probe (2 s), nothing to send
    # Its twin never probes and never polls labels: only its own failed lookup can tell it.
    other = make_station(station, user, probe_s=3600, label_poll_s=3600)
    for w in (idle, other):
        qtbot.waitUntil(lambda w=w: w.net_label.text() == tr("online"), timeout=5000)
    assert wait_idle(10), "the login's background jobs (firmware list) are done"
    stack.server.stop()            # returns once the port refuses connections
    stopped = time.monotonic()
    try:
        qtbot.waitUntil(lambda: idle.net_label.text() == _offline_text(), timeout=10000)
        assert time.monotonic() - stopped < 5.0, "offline shown within 5 s of the server going"
        assert RED in idle.net_label.styleSheet()
        assert other.net_label.text() == tr("online"), "no request yet: nothing told it"
        with qtbot.waitSignal(other.lot_shown, timeout=10000):
            qtbot.keyClicks(other.scan_field, "LOT-NOT-CACHED")
            qtbot.keyClick(other.scan_field, Qt.Key_Return)
        failed_at = time.monotonic()
        qtbot.waitUntil(lambda: other.net_label.text() == _offline_text(), timeout=5000)
        assert time.monotonic() - failed_at < 1.5, "a failed request flips it at once"
    finally:
        stack.server.start()
    qtbot.waitUntil(lambda: idle.net_label.text() == tr("online"), timeout=10000)


def test_unknown_state_text_is_neutral():
    assert sync_text(SyncState()) == tr("status.connecting")
    assert sync_text(SyncState(online=False)) == _offline_text()


def test_login_dialog_puts_the_cursor_in_username(stack, factory, make_station, qtbot):
    _, station, _ = _station(factory)
    w = make_station(station, login=False)
    dialog = w.show_login()
    assert dialog.focusWidget() is dialog.username
    qtbot.keyClicks(dialog.username, "nobody-here")
    qtbot.keyClick(dialog.username, Qt.Key_Return)      # Enter moves on to Password
    assert dialog.focusWidget() is dialog.password
    qtbot.keyClicks(dialog.password, "wrong-password")
    qtbot.keyClick(dialog.password, Qt.Key_Return)
    qtbot.waitUntil(lambda: dialog.message.text() == tr("login.failed"), timeout=10000)
    assert dialog.focusWidget() is dialog.password, "a wrong password: retype the password"
    assert dialog.username.text() == "nobody-here" and dialog.password.text() == ""
    # After a logout the next operator starts at Username again.
    dialog.reject()
    w.logout("idle")
    assert w.login_dialog.focusWidget() is w.login_dialog.username
