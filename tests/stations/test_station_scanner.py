"""Scanner units: wedge timing heuristic, AIM / GS1 parsing, serial reader with reconnect."""
from __future__ import annotations

import threading

import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel, QLineEdit, QVBoxLayout, QWidget

from stations.scanner import (GS, SerialScanner, WedgeDetector, WedgeScanner, parse_barcode)


# -- wedge timing --------------------------------------------------------------------------
def _burst(detector, text, start=0.0, gap=8.0):
    t = start
    for ch in text:
        detector.feed(ch, t)
        t += gap
    return t


def test_fast_burst_with_enter_is_a_scan():
    d = WedgeDetector(max_gap_ms=35, min_length=4)
    t = _burst(d, "LOT-20260101-0001", gap=8)
    assert d.finish(t) == "LOT-20260101-0001"
    assert d.finish(t + 5) is None, "finish resets the burst"


def test_typing_is_not_a_scan():
    d = WedgeDetector(max_gap_ms=35, min_length=4)
    t = _burst(d, "LOT-1234", gap=120)          # a quick typist: ~120 ms per key
    assert d.finish(t) is None


def test_short_burst_and_late_enter_are_not_scans():
    d = WedgeDetector(max_gap_ms=35, min_length=4)
    t = _burst(d, "ab", gap=5)                  # key rollover of two keys
    assert d.finish(t) is None
    t = _burst(d, "ABCDEFG", gap=5)
    assert d.finish(t + 500) is None            # Enter long after the burst: a person pressed it


def test_a_pause_starts_a_new_burst():
    d = WedgeDetector(max_gap_ms=35, min_length=4)
    t = _burst(d, "typed", gap=150)             # typed by hand, then a scan right after
    t = _burst(d, "SN-0001", start=t + 400, gap=6)
    assert d.finish(t) == "SN-0001"


def test_wedge_scanner_consumes_scan_but_not_typing(qtbot):
    scans = []
    field = QLineEdit()
    qtbot.addWidget(field)
    scanner = WedgeScanner(max_gap_ms=80, min_length=4)  # slack for a loaded CI machine
    scanner.on_scan = scans.append
    scanner.start()
    try:
        entered = []
        field.returnPressed.connect(lambda: entered.append(field.text()))
        qtbot.keyClicks(field, "SCAN-0001")
        qtbot.keyClick(field, Qt.Key_Return)
        assert [b.text for b in scans] == ["SCAN-0001"]
        assert field.text() == "" and entered == [], "the scan's Enter is swallowed"
        qtbot.keyClicks(field, "3.25", delay=150)
        qtbot.keyClick(field, Qt.Key_Return)
        assert len(scans) == 1 and entered == ["3.25"] and field.text() == "3.25"
    finally:
        scanner.stop()


def test_propagated_key_events_are_counted_once(qtbot):
    """Keys a child ignores bubble to its parents; the detector must see each key once."""
    scans = []
    parent = QWidget()
    layout = QVBoxLayout(parent)
    label = QLabel("ignores keys")
    layout.addWidget(label)
    qtbot.addWidget(parent)
    scanner = WedgeScanner(max_gap_ms=80, min_length=4)  # slack for a loaded CI machine
    scanner.on_scan = scans.append
    scanner.start()
    try:
        qtbot.keyClicks(label, "AABB-11")
        qtbot.keyClick(label, Qt.Key_Return)
        assert [b.text for b in scans] == ["AABB-11"]
    finally:
        scanner.stop()


# -- AIM / GS1 parsing ---------------------------------------------------------------------
def test_plain_and_aim_prefixed_codes():
    assert parse_barcode("LOT-20260101-0001\r\n").text == "LOT-20260101-0001"
    b = parse_barcode("]C0LOT-20260101-0001")
    assert (b.symbology, b.text, b.is_gs1) == ("]C0", "LOT-20260101-0001", False)
    assert parse_barcode("]Q1SN-0001").text == "SN-0001"


def test_plain_text_that_looks_like_ai_is_not_gs1():
    b = parse_barcode("10ABC123")           # no GS1 symbology and no GS: a plain lot number
    assert b.text == "10ABC123" and not b.is_gs1 and b.lot_no is None


def test_gs1_datamatrix_with_lot_and_serial():
    b = parse_barcode("]d20107031599000006" + "10LOT-A1" + GS + "21SN-0007")
    assert b.symbology == "]d2" and b.gs1["01"] == "07031599000006"
    assert (b.lot_no, b.serial) == ("LOT-A1", "SN-0007")


def test_gs1_128_with_printable_gs_substitute_from_a_wedge():
    b = parse_barcode("]C110LOT-B2|21SN-0008", gs_substitute="|")
    assert (b.lot_no, b.serial) == ("LOT-B2", "SN-0008")


def test_gs1_human_readable_form():
    b = parse_barcode("(01)07031599000006(10)LOT-C3(21)SN-9")
    assert (b.gs1["01"], b.lot_no, b.serial) == ("07031599000006", "LOT-C3", "SN-9")


def test_malformed_gs1_reports_an_error_instead_of_raising():
    b = parse_barcode("]C1" + "99" + GS)   # GS1 symbology, nonsense content
    assert b.error and not b.is_gs1


# -- serial --------------------------------------------------------------------------------
def _collect(scanner):
    got, states, event = [], [], threading.Event()

    def on_scan(b):
        got.append(b)
        event.set()
    scanner.on_scan = on_scan
    scanner.on_state = lambda s, d="": states.append(s)
    return got, states, event


def test_serial_loop_delivers_terminated_scans_with_gs():
    scanner = SerialScanner("loop://", 115200, b"\r")
    got, states, event = _collect(scanner)
    scanner.start()
    try:
        assert scanner.connected.wait(5)
        scanner.serial.write(b"]C110LOT-D4\x1d21SN-1\rPLAIN-")
        assert event.wait(5)
        scanner.serial.write(b"0002\r")
        for _ in range(50):
            if len(got) == 2:
                break
            threading.Event().wait(0.1)
        assert [(b.lot_no, b.serial) for b in got[:1]] == [("LOT-D4", "SN-1")]
        assert [b.text for b in got] == ["10LOT-D4\x1d21SN-1", "PLAIN-0002"]
        assert states[0] == "connected"
    finally:
        scanner.stop()


def test_serial_reconnects_after_unplug():
    scanner = SerialScanner("loop://", 9600, b"\n")
    got, states, event = _collect(scanner)
    scanner.start()
    try:
        assert scanner.connected.wait(5)
        first = scanner.serial
        first.close()                                   # the cable is pulled
        for _ in range(100):
            # the state callback comes just after the event is set: wait for both
            if (scanner.connected.is_set() and scanner.serial is not first
                    and states.count("connected") >= 2):
                break
            threading.Event().wait(0.05)
        assert scanner.serial is not first and scanner.connected.is_set()
        assert "disconnected" in states and states.count("connected") >= 2
        scanner.serial.write(b"AFTER-REPLUG\n")
        assert event.wait(5) and got[-1].text == "AFTER-REPLUG"
    finally:
        scanner.stop()


@pytest.mark.timeout(30)
def test_missing_serial_port_keeps_retrying_without_crashing():
    scanner = SerialScanner("/dev/ttyNEUROHUB-MISSING", 9600, retry_max=0.2)
    _, states, _ = _collect(scanner)
    scanner.start()
    try:
        for _ in range(100):
            if states.count("disconnected") >= 3:
                break
            threading.Event().wait(0.05)
        assert states.count("disconnected") >= 3 and "connected" not in states
        assert scanner._thread.is_alive()
    finally:
        scanner.stop()
    assert not scanner._thread.is_alive()
