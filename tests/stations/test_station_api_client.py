"""API client against the real server: token renewal, idle logout, 401 recovery, offline and
timeouts; the login dialog with a badge scan; idle logout in the UI."""
from __future__ import annotations

import socket
import time

import pytest
from PyQt5.QtCore import Qt

from stations.api_client import ApiClient, ApiError, AuthError, NotLoggedIn, Offline
from stations.i18n import tr
from tests.stations.conftest import PASSWORD
from tests.support.procs import free_port


class Clock:
    """A hand-moved clock."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_login_and_renewal_before_expiry(stack, factory):
    _, user = factory.user("operator")
    station = factory.station()
    clock = Clock()
    api = ApiClient(stack.url, station, timeout=5, idle_timeout=3600, clock=clock)
    assert api.login(user, PASSWORD) == {"username": user, "role": "operator"}
    assert api.get_station()["code"] == station and api.logins == 1
    clock.now += 1800 - 400          # not yet inside the renewal margin (a fifth of 30 min)
    api.touch()
    api.get_station()
    assert api.logins == 1
    clock.now += 100                 # 5 min before expiry: renewed before the request
    api.touch()
    assert api.get_station()["code"] == station and api.logins == 2


def test_idle_operator_is_logged_out_instead_of_renewed(stack, factory):
    _, user = factory.user("operator")
    station = factory.station()
    clock = Clock()
    api = ApiClient(stack.url, station, idle_timeout=15 * 60, clock=clock)
    reasons = []
    api.on_logout = reasons.append
    api.login(user, PASSWORD)
    clock.now += 20 * 60             # idle for 20 minutes: no activity since login
    assert api.idle_expired()
    clock.now += 6 * 60              # token now near expiry: renewal would need activity
    with pytest.raises(NotLoggedIn):
        api.get_station()
    assert not api.logged_in and reasons == ["idle"]
    with pytest.raises(NotLoggedIn):
        api.heartbeat()


def test_refused_token_is_renewed_once_and_bad_password_is_auth_error(stack, factory):
    _, user = factory.user("operator")
    station = factory.station()
    api = ApiClient(stack.url, station)
    api.login(user, PASSWORD)
    api._auth.token = api._auth.token[:-4] + "AAAA"      # e.g. the server's key changed
    assert api.get_station()["code"] == station and api.logins == 2
    with pytest.raises(AuthError):
        ApiClient(stack.url, station).login(user, "wrong-password")
    with pytest.raises(ApiError) as exc:
        api.get_lot("NO-SUCH-LOT")
    assert exc.value.status == 404 and "NO-SUCH-LOT" in exc.value.detail
    assert exc.value.permanent


def test_unreachable_server_and_hanging_server_are_offline():
    closed = ApiClient(f"http://127.0.0.1:{free_port()}", "ST-1", timeout=1)
    with pytest.raises(Offline):
        closed.login("x", "y")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)                 # accepts, never answers: a hung server / dead WiFi
    try:
        hung = ApiClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "ST-1", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(Offline) as exc:
            hung.login("x", "y")
        assert time.monotonic() - started < 3 and "timed out" in exc.value.detail
    finally:
        listener.close()


def test_badge_scan_fills_username_and_login_dialog_logs_in(stack, factory, make_station, qtbot):
    _, user = factory.user("operator")
    station = factory.station(steps=["FCT"])
    w = make_station(station, login=False, scanner_mode="wedge", badge_prefix="BADGE:",
                     wedge_max_gap_ms=80)
    dialog = w.show_login()
    qtbot.waitUntil(dialog.isVisible)
    qtbot.keyClicks(dialog.username, "BADGE:" + user)       # the badge scanner types fast
    qtbot.keyClick(dialog.username, Qt.Key_Return)
    assert dialog.username.text() == user
    qtbot.keyClicks(dialog.password, "wrong", delay=150)
    with qtbot.waitSignal(dialog.submitted):
        qtbot.mouseClick(dialog.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.message.text() == tr("login.failed"), timeout=10000)
    qtbot.keyClicks(dialog.password, PASSWORD, delay=150)
    with qtbot.waitSignal(w.logged_in, timeout=10000):
        qtbot.mouseClick(dialog.button, Qt.LeftButton)
    assert not dialog.isVisible()
    assert w.user_label.text() == tr("status.user", user=user)


def test_idle_timeout_in_the_ui_returns_to_login(stack, factory, make_station, qtbot):
    _, user = factory.user("operator")
    station = factory.station(steps=["FCT"])
    w = make_station(station, user, idle_timeout_min=1)
    w.ctx.api.last_activity -= 120                            # two idle minutes
    w._check_idle()
    assert not w.ctx.api.logged_in
    assert w.login_dialog.isVisible()
    assert w.login_dialog.message.text() == tr("login.idle", minutes="1")
