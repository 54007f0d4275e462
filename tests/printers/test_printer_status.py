"""~HS parsing and the socket reader: all three strings or a fault, never a false "ready"."""
import socket
import threading
import time

import pytest

from printers import (PrinterOffline, PrinterSimulator, PrinterUnreachable, StatusError,
                      format_host_status, parse_host_status, printer_for_uri, read_host_status)


def hs(s1="030,0,0,1245,000,0,0,0,000,0,0,0", s2="000,0,0,0,0,2,4,0,00000000,1,000",
       s3="1234,0"):
    return b"".join(b"\x02" + s.encode() + b"\x03\r\n" for s in (s1, s2, s3))


READY = hs()


def test_ready_printer():
    status = parse_host_status(READY)
    assert status.ready is True
    assert status.reasons == []
    assert (status.paper_out, status.paused, status.head_open, status.ribbon_out) == (
        False, False, False, False)
    assert status.label_length_dots == 1245 and status.print_mode == "tear-off"
    assert status.raw == READY
    assert "1234" not in repr(status)  # the password in string 3 stays out of logs


@pytest.mark.parametrize("kwargs, reason, attr", [
    ({"s1": "030,1,0,1245,000,0,0,0,000,0,0,0"}, "paper_out", "paper_out"),
    ({"s1": "030,0,1,1245,000,0,0,0,000,0,0,0"}, "paused", "paused"),
    ({"s2": "000,0,1,0,0,2,4,0,00000000,1,000"}, "head_open", "head_open"),
    ({"s2": "000,0,0,1,1,2,4,0,00000000,1,000"}, "ribbon_out", "ribbon_out"),
    ({"s1": "030,0,0,1245,007,1,0,0,000,0,0,0"}, "buffer_full", "buffer_full"),
])
def test_single_fault(kwargs, reason, attr):
    status = parse_host_status(hs(**kwargs))
    assert status.ready is False
    assert status.reasons == [reason]
    assert getattr(status, attr) is True


def test_combined_faults_and_counts():
    status = parse_host_status(hs(s1="030,1,1,0812,003,0,0,0,000,0,0,1",
                                  s2="000,0,1,1,1,0,4,0,00000012,1,000"))
    assert not status.ready
    assert set(status.reasons) == {"paper_out", "paused", "head_open", "ribbon_out",
                                   "over_temperature"}
    assert status.formats_in_buffer == 3 and status.labels_remaining == 12
    assert status.thermal_transfer and status.print_mode == "rewind"


def test_advisory_flags_do_not_block():
    status = parse_host_status(hs(s1="030,0,0,1245,000,0,0,1,000,1,1,0"))
    assert status.ready
    assert set(status.warnings) == {"under_temperature", "corrupt_ram", "partial_format"}


def test_simulator_format_round_trips():
    status = parse_host_status(format_host_status(paper_out=True, head_open=True))
    assert status.reasons == ["paper_out", "head_open"]


@pytest.mark.parametrize("raw", [
    b"",
    READY[:-10],                                                   # third string cut off
    READY.split(b"\r\n")[0] + b"\r\n",                             # one string only
    hs(s1="030,0,0,1245"),                                         # too few fields
    hs(s2="000,0,X,0,0,2,4,0,00000000,1,000"),                     # flag not 0/1
    hs(s1="030,0,0,12a5,000,0,0,0,000,0,0,0"),                     # label length not a number
    b"garbage" + READY,                                            # junk before the frames
    READY + b"\x02extra",                                          # junk after the third
    READY.replace(b"030", "03\u00e9".encode()),                    # not ASCII
])
def test_malformed_answers_raise(raw):
    with pytest.raises(StatusError):
        parse_host_status(raw)


def _fake_printer(chunks, delay=0.0, close=False):
    """A socketpair whose far end answers ~HS with ``chunks`` (one send each)."""
    ours, theirs = socket.socketpair()

    def serve():
        assert theirs.recv(16) == b"~HS"
        for chunk in chunks:
            theirs.sendall(chunk)
            time.sleep(delay)
        if close:
            theirs.close()
    threading.Thread(target=serve, daemon=True).start()
    return ours, theirs


def test_reader_assembles_byte_by_byte_segments():
    ours, theirs = _fake_printer([READY[i:i + 1] for i in range(len(READY))], delay=0.001)
    status = read_host_status(ours, timeout=5)
    assert status.ready and status.raw == READY
    ours.close(), theirs.close()


def test_reader_waits_for_the_third_string_and_its_crlf():
    # ETX of string 3 and its CR LF arrive in separate segments: both are consumed.
    ours, theirs = _fake_printer([READY[:-2], READY[-2:]], delay=0.02)
    status = read_host_status(ours, timeout=5)
    assert status.raw == READY
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):
        ours.recv(1)  # nothing left unread on the socket
    ours.close(), theirs.close()


def test_two_strings_then_silence_is_offline_not_ready():
    two = b"".join(READY.split(b"\r\n")[:2]) + b"\r\n"
    ours, theirs = _fake_printer([two])
    started = time.monotonic()
    with pytest.raises(PrinterOffline, match="2 of 3"):
        read_host_status(ours, timeout=0.5)
    assert time.monotonic() - started < 2
    ours.close(), theirs.close()


def test_connection_closed_mid_answer_is_offline():
    ours, theirs = _fake_printer([READY[:30]], close=True)
    with pytest.raises(PrinterOffline, match="closed"):
        read_host_status(ours, timeout=2)
    ours.close()


@pytest.mark.parametrize("mode", [True, "bytes"])
def test_reader_against_simulator_sending_separate_segments(mode):
    with PrinterSimulator(render=False, split_status_segments=mode,
                          segment_delay=0.002) as sim:
        sim.set_fault("head_open")
        with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
            status = read_host_status(sock, timeout=5)
        assert status.reasons == ["head_open"]
        assert status.raw.count(b"\x03\r\n") == 3


def test_offline_simulator_times_out_as_offline():
    with PrinterSimulator(render=False) as sim:
        sim.set_fault("offline")
        printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}", status_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(PrinterOffline):
            printer.status()
        assert 0.4 < time.monotonic() - started < 2


def test_down_simulator_is_unreachable():
    with PrinterSimulator(render=False) as sim:
        sim.set_fault("down")
        with pytest.raises(PrinterUnreachable):
            printer_for_uri(f"tcp://127.0.0.1:{sim.port}", connect_timeout=1).status()
        sim.clear_faults()  # powered on again: same port answers
        printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}")
        assert printer.status().ready
        printer.close()
